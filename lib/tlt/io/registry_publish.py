"""Publishing a registry version: upload into a folder of its own, then commit its entry with a
create-only write (see `tlt.io.registry`'s module docstring for why nothing is ever lost).

The steps, in order: check the name, version and metadata before any byte moves; upload under a
lease (a killed publish leaves an upload the next publish sweeps, `tlt.io.registry_orphans`);
commit the entry (`tlt.io.registry_catalogue.commit_entry`); then best-effort housekeeping that
can no longer undo the commit.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from tqdm import tqdm

from tlt.errors import RegistryError, StorageError
from tlt.io import storage
from tlt.io.registry_aliases import aliases
from tlt.io.registry_catalogue import commit_entry, load_catalogue, write_index_cache
from tlt.io.registry_files import collect_files, model_file_metadata, sha256_file
from tlt.io.registry_index import check_name
from tlt.io.registry_orphans import lease, remove_orphans
from tlt.io.registry_types import APPLICATIONS, VersionInfo, version_info

__all__ = ["PublishRequest", "publish_version", "sweep_orphans"]

_LOG = logging.getLogger(__name__)


class _Registry(Protocol):
    """What publishing needs of `tlt.io.registry.Registry` (kept import-free: no cycle)."""

    root: str
    orphan_grace: float

    def get_version(self, name: str, version: str | int) -> Any: ...

    def list_versions(self, name: str) -> list: ...


@dataclass(frozen=True)
class PublishRequest:
    """The catalogue columns and options of one publish (see `Registry.publish`)."""

    metadata: dict | None = None
    task: str | None = None
    framework: str | None = None
    precision: str | None = None
    description: str | None = None
    overwrite: bool = False
    progress: bool = False


def publish_version(registry: _Registry, name: str, version: str,
                    files: str | os.PathLike | Sequence[str | os.PathLike],
                    request: PublishRequest) -> VersionInfo:
    """Publish local ``files`` as ``name`` version ``version`` (`Registry.publish` documents
    the arguments, the guarantees and the errors)."""
    check_name("model name", name)
    check_name("version", version)
    local = collect_files(files)
    model = load_catalogue(registry.root, required=False)["models"].get(name, {"versions": {}})
    replaced = model["versions"].get(version)
    if replaced is not None and not request.overwrite:
        raise _exists_error(registry.root, name, version)
    if replaced is not None:
        _check_not_aliased(registry, name, version)
    meta = _check_metadata(request.metadata)
    for key, value in model_file_metadata(local).items():
        meta.setdefault(key, value)
    fields = _catalogue_fields(model, meta, request)
    location = f"{name}/{version}-{secrets.token_hex(4)}"
    with lease(registry.root, location, registry.orphan_grace):
        entry = _upload(registry.root, local, location, meta, request.progress,
                        f"publish {name}:{version}")
        if not commit_entry(registry.root, name, version, fields, entry,
                            replace=request.overwrite):
            raise _exists_error(registry.root, name, version, raced=True)  # the lease drops it
    _after_commit(registry, name, version, replaced, location)
    _LOG.info("published %s:%s (%d files) to %s", name, version, len(local), registry.root)
    return version_info(name, version, entry)


def sweep_orphans(root: str, name: str, catalogue: dict, grace: float) -> list[str]:
    """Delete the uploads of ``name`` that no committed version of ``catalogue`` points at and
    whose publisher is gone (`tlt.io.registry_orphans.remove_orphans`); return them."""
    model = catalogue["models"].get(name, {"versions": {}})
    referenced = {e.get("location", f"{name}/{v}") for v, e in model["versions"].items()}
    return remove_orphans(root, name, referenced, grace)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _upload(root: str, local: list[tuple[Path, str]], location: str, meta: dict,
            progress: bool, desc: str) -> dict:
    """Upload the files into ``location``; return the version entry describing them."""
    files = []
    with tqdm(total=sum(p.stat().st_size for p, _ in local), unit="B", unit_scale=True,
              disable=not progress, desc=desc) as bar:
        for path, rel in local:
            files.append({"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)})
            storage.upload_file(path, storage.join(root, location, rel))
            bar.update(path.stat().st_size)
    return {"location": location, "created": _now(), "files": files, "metadata": meta,
            "size": sum(f["size"] for f in files)}


def _after_commit(registry: _Registry, name: str, version: str, replaced: dict | None,
                  location: str) -> None:
    """Best-effort housekeeping once a version is committed: none of it can undo that."""
    root = registry.root
    try:
        if replaced is not None and replaced.get("location") not in (None, location):
            storage.delete_tree(storage.join(root, replaced["location"]))
        catalogue = load_catalogue(root, required=False)
        write_index_cache(root, catalogue)
        sweep_orphans(root, name, catalogue, registry.orphan_grace)
    except (StorageError, RegistryError) as err:
        _LOG.warning("published %s:%s, but tidying registry %s failed: %s", name, version,
                     root, err)


def _check_not_aliased(registry: _Registry, name: str, version: str) -> None:
    named = sorted(a for a, v in aliases(registry, name).items() if v == version)
    if named:
        raise RegistryError(f"version {version} of '{name}' is its {', '.join(named)} "
                            f"version in registry {registry.root} and cannot be overwritten; "
                            f"publish a new version and promote it")


def _exists_error(root: str, name: str, version: str, raced: bool = False) -> RegistryError:
    how = "was published by someone else meanwhile" if raced else "already exists"
    return RegistryError(f"version {version} of '{name}' {how} in registry {root}; "
                         f"versions are immutable: publish a new version, or pass "
                         f"overwrite=True (tlt-pull --overwrite) to replace it")


def _check_metadata(metadata: dict | None) -> dict:
    """A copy of ``metadata``, proven storable as JSON before anything is uploaded."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise RegistryError(f"metadata must be a JSON object (dict), got "
                            f"{type(metadata).__name__}")
    try:
        return json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as err:
        raise RegistryError(f"metadata cannot be stored as JSON: {err}") from None


def _catalogue_fields(model: dict, meta: dict, request: PublishRequest) -> dict:
    """The model's catalogue columns after this publish: given values, else earlier ones."""
    task = request.task
    application = APPLICATIONS.get(task, task.title()) if task else None
    if application is None and not model.get("application") and meta.get("task"):
        application = APPLICATIONS.get(meta["task"], str(meta["task"]).title())
    return {"application": application or model.get("application", ""),
            "framework": request.framework or model.get("framework", "TLT"),
            "precision": request.precision or model.get("precision", "FP32"),
            "description": request.description if request.description is not None
            else model.get("description", "")}
