"""What the model registry hands out: `FileInfo`, `VersionInfo`, `ModelInfo`, built from
validated catalogue entries (`tlt.io.registry_index`), and the natural version order."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["APPLICATIONS", "FileInfo", "VersionInfo", "ModelInfo", "version_key", "model_info",
           "version_info"]

#: Display names of the ``--task`` values, as NGC's "Application" column shows them.
APPLICATIONS = {"classification": "Classification", "detection": "Detection"}


@dataclass(frozen=True)
class FileInfo:
    """One file of a published version: path relative to the version folder, size, SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class VersionInfo:
    """One published version of a model."""

    name: str
    version: str
    created: str
    size: int
    files: tuple[FileInfo, ...]
    metadata: dict = field(default_factory=dict)
    location: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """A model in the registry with its catalogue fields and versions (oldest first)."""

    name: str
    application: str
    framework: str
    precision: str
    description: str
    versions: tuple[str, ...]
    latest_version: str
    last_modified: str


def version_key(version: str) -> tuple:
    """Sort key of natural order: "2" < "10", "1.9" < "1.10"; digit runs compare as numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                 for p in re.split(r"(\d+)", version) if p)


def model_info(name: str, model: dict) -> ModelInfo:
    """A catalogue model entry (``{"application", ..., "versions": {...}}``) as a ModelInfo."""
    versions = tuple(sorted(model["versions"], key=version_key))
    latest = versions[-1] if versions else ""
    return ModelInfo(name=name, application=model.get("application", ""),
                     framework=model.get("framework", ""),
                     precision=model.get("precision", ""),
                     description=model.get("description", ""), versions=versions,
                     latest_version=latest,
                     last_modified=model["versions"][latest].get("created", "") if latest else "")


def version_info(name: str, version: str, entry: dict) -> VersionInfo:
    """A validated entry (see `tlt.io.registry_index.validate_version`) as a VersionInfo."""
    files = tuple(FileInfo(f["path"], f["size"], f["sha256"]) for f in entry["files"])
    return VersionInfo(name=name, version=version, created=entry.get("created", ""),
                       size=entry.get("size", sum(f.size for f in files)), files=files,
                       metadata=dict(entry.get("metadata") or {}),
                       location=entry.get("location", f"{name}/{version}"))
