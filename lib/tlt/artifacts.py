"""Artifact folders and their ``metadata.json`` lineage record.

Every stage output is a folder holding its files plus ``metadata.json``::

    {"stage": "convert", "tlt_version": "0.1.0", "created": "...", "spec_digest": "sha256:...",
     "parents": [{"uri": "...", "stage": "...", "digest": "..."}], ...stage fields}

so any artifact can be traced back through the stages and spec that made it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from tlt import __version__
from tlt.io.atomic import atomic_write_text

__all__ = ["METADATA_FILE", "spec_digest", "write_metadata", "read_metadata"]

METADATA_FILE = "metadata.json"


def spec_digest(spec: Any) -> str:
    """Digest of a spec: a protobuf message (its canonical text form), str or bytes."""
    if hasattr(spec, "SerializeToString"):
        from google.protobuf import text_format

        data = text_format.MessageToString(spec).encode("utf-8")
    elif isinstance(spec, str):
        data = spec.encode("utf-8")
    else:
        data = bytes(spec)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_metadata(out_dir: str | Path, stage: str, *, spec: Any = None,
                   parents: Iterable[dict[str, Any]] = (), **fields: Any) -> dict[str, Any]:
    """Write ``<out_dir>/metadata.json`` atomically and return what was written.

    Args:
        out_dir: the artifact folder.
        stage: name of the stage that produced it (registry key, e.g. ``convert``).
        spec: the spec message or text the stage ran with; stored as a digest.
        parents: lineage entries of the input artifacts (each at least ``{"uri": ...}``).
        **fields: stage-specific values (JSON-serialisable).
    """
    meta: dict[str, Any] = {
        "stage": stage,
        "tlt_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parents": list(parents),
    }
    if spec is not None:
        meta["spec_digest"] = spec_digest(spec)
    meta.update(fields)
    atomic_write_text(Path(out_dir) / METADATA_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def read_metadata(artifact_dir: str | Path) -> dict[str, Any]:
    """Read an artifact folder's ``metadata.json`` (empty dict when it has none)."""
    path = Path(artifact_dir) / METADATA_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
