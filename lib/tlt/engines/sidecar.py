"""The JSON sidecar beside every engine file: what was built, for which input, from which export.

``saved.engine`` gets ``saved.engine.json``::

    {"format": "tlt-engine", "version": 1, "backend": "onnxruntime", "precision": "int8",
     "input_name": "input_1", "input_dims": [3, 64, 64], "input_order": "nchw",
     "output_names": ["predictions/Softmax"], "max_batch_size": 16, "source": "model.etlt",
     "source_digest": "sha256:...", "runtime_version": "1.31.1", "created": "...",
     "export": {...the export's metadata: task, classes, preprocessing...}}

so evaluate and infer can run an engine with nothing else (classes, preprocessing and the
post-processing spec travel in ``export``).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tlt.errors import ModelFileError
from tlt.io.atomic import atomic_write_text

__all__ = ["SIDECAR_FORMAT", "EngineInfo", "sidecar_path", "write_sidecar", "read_sidecar"]

SIDECAR_FORMAT = "tlt-engine"
_VERSION = 1


@dataclass
class EngineInfo:
    """The facts of one engine file (its sidecar's content).

    Attributes:
        backend: ``onnxruntime`` or ``tensorrt``.
        precision: ``fp32``, ``fp16`` or ``int8``.
        input_name: the engine's input tensor.
        input_dims: ``[C, H, W]``.
        output_names: outputs the engine returns, in order.
        max_batch_size: largest batch one run takes; bigger batches are split.
        source: the export it was built from (as given to the builder).
        source_digest: sha256 of that export file.
        input_order: ``nchw`` (TLT exports are channels-first).
        runtime_version: version of the backend that built it.
        export: the export's metadata (task, classes, preprocessing ...).
        created: UTC build time.
        float_nodes: the graph nodes an ONNX Runtime int8 engine runs in fp32 (the end of the
            network, chosen by tlt-converter's ``--int8_float_tail``); empty otherwise.
    """

    backend: str
    precision: str
    input_name: str
    input_dims: list[int]
    output_names: list[str]
    max_batch_size: int
    source: str
    source_digest: str
    input_order: str = "nchw"
    runtime_version: str = ""
    export: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    float_nodes: list[str] = field(default_factory=list)

    @property
    def task(self) -> str | None:
        """``classification`` or ``detection`` (from the export), None when unknown."""
        return self.export.get("task")


def sidecar_path(engine_path: str | Path) -> Path:
    """``<engine>.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | Path, info: EngineInfo) -> Path:
    """Write the sidecar of ``engine_path`` atomically and return its path."""
    if not info.created:
        info.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    data = {"format": SIDECAR_FORMAT, "version": _VERSION, **asdict(info)}
    path = sidecar_path(engine_path)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(engine_path: str | Path) -> EngineInfo:
    """Read the sidecar of an engine file.

    Raises:
        ModelFileError: no sidecar beside the engine, or a malformed one.
    """
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ModelFileError(f"{engine_path}: no engine sidecar {path.name} next to it (tlt-converter "
                             "writes both files; copy them together)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelFileError(f"{path}: unreadable engine sidecar ({err})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ModelFileError(f"{path}: not a tlt engine sidecar (format is not {SIDECAR_FORMAT!r})")
    if data.get("version") != _VERSION:
        raise ModelFileError(f"{path}: engine sidecar version {data.get('version')} is not "
                             f"supported (this release reads version {_VERSION})")
    known = set(EngineInfo.__dataclass_fields__)
    try:
        return EngineInfo(**{k: v for k, v in data.items() if k in known})
    except TypeError as err:
        raise ModelFileError(f"{path}: incomplete engine sidecar ({err})") from None
