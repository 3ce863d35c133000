"""The local side of the model registry: which files a publish uploads (and under what names),
their SHA-256, the facts a plain model file gives the catalogue, and where a pull may write."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from tlt.errors import ModelFileError, RegistryError
from tlt.io.registry_types import VersionInfo

__all__ = ["sha256_file", "collect_files", "download_targets", "model_file_metadata"]

_CHUNK = 1 << 20
_MODEL_SUFFIXES = (".tlt", ".etlt")


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a local file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def collect_files(files) -> list[tuple[Path, str]]:
    """Expand what `Registry.publish` was given into (local path, relative posix path) pairs.

    Raises:
        RegistryError: a path that does not exist, two files stored under one name, no files.
    """
    items = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    single_dir = len(items) == 1 and Path(items[0]).is_dir()
    out: dict[str, Path] = {}
    for item in items:
        for p, rel in _pairs(Path(item), single_dir):
            if rel in out:
                raise RegistryError(f"cannot publish: two files would both be stored as "
                                    f"{rel!r} ({out[rel]} and {p})")
            out[rel] = p
    if not out:
        raise RegistryError(f"cannot publish {files}: no files found")
    return [(p, rel) for rel, p in out.items()]


def _pairs(path: Path, single_dir: bool) -> list[tuple[Path, str]]:
    """(file, stored name) of one item of `collect_files`."""
    if not path.exists():
        raise RegistryError(f"cannot publish {path}: no such file or folder")
    if not path.is_dir():
        return [(path, path.name)]
    # A lone folder is published as its contents; folders in a list keep their name.
    base = path if single_dir else path.parent
    return [(p, p.relative_to(base).as_posix()) for p in sorted(path.rglob("*")) if p.is_file()]


def download_targets(dest: Path, info: VersionInfo) -> list[Path]:
    """The local path of every file of ``info`` under ``dest``, each proven to stay inside it.

    Raises:
        RegistryError: ``dest`` is (under) a file, or a stored path would leave ``dest``
            (``..``, an absolute path, a symbolic link pointing out).
    """
    for folder in (dest, *dest.parents):
        if folder.exists():
            if not folder.is_dir():
                raise RegistryError(f"cannot download into {dest}: {folder} is a file, not a "
                                    f"folder")
            break
    root = dest.resolve()
    targets = []
    for f in info.files:
        target = dest.joinpath(*PurePosixPath(f.path).parts)
        resolved = target.resolve()
        if resolved == root or root not in resolved.parents:
            raise RegistryError(f"{info.name}:{info.version}: file {f.path!r} would be written "
                                f"to {resolved}, outside the destination {root}")
        targets.append(target)
    return targets


def model_file_metadata(local: list[tuple[Path, str]]) -> dict:
    """Metadata of the first plain model file among ``local`` (encrypted ones need a key)."""
    from tlt.io import modelfile

    for path, _ in local:
        if path.suffix not in _MODEL_SUFFIXES:
            continue
        try:
            meta = modelfile.read_model_metadata(path)
        except ModelFileError:
            # Encrypted (ModelKeyError: no key here) or not a model file: publishing any bytes
            # is allowed, only the catalogue misses the facts.
            continue
        meta.pop("spec", None)  # spec text can be long; it stays inside the model file
        return meta
    return {}
