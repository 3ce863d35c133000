"""Downloading one registry version: every file checked against its catalogue SHA-256 and
renamed into place only when it matches, inside the destination folder only."""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from tlt.errors import RegistryError
from tlt.io import storage
from tlt.io.atomic import atomic_path
from tlt.io.registry_files import download_targets, sha256_file
from tlt.io.registry_types import FileInfo, VersionInfo

__all__ = ["pull_version"]


def pull_version(root: str, info: VersionInfo, dest_dir: str | os.PathLike, *,
                 progress: bool = False) -> list[Path]:
    """Download the files of ``info`` from the registry at ``root`` into ``dest_dir``.

    Every target path is checked to resolve inside ``dest_dir`` before anything is written; each
    file goes to a temporary sibling and is renamed into place once its checksum matches, so
    ``dest_dir`` never holds a corrupt file.

    Returns:
        The local paths written, in catalogue order.

    Raises:
        RegistryError: ``dest_dir`` is (under) a file, a target would leave it, a listed file is
            missing, or a checksum differs.
        StorageError: a download failed.
    """
    targets = download_targets(Path(dest_dir), info)
    with tqdm(total=info.size, unit="B", unit_scale=True, disable=not progress,
              desc=f"{info.name}:{info.version}") as bar:
        for f, target in zip(info.files, targets):
            _download(root, storage.join(root, info.location, f.path), target, f)
            bar.update(f.size)
    return targets


def _download(root: str, uri: str, target: Path, f: FileInfo) -> None:
    if not storage.exists(uri):
        raise RegistryError(f"registry {root}: {uri} is listed in the catalogue but missing")
    with atomic_path(target) as tmp:
        storage.download_file(uri, tmp)
        got = sha256_file(tmp)
        if got != f.sha256:
            raise RegistryError(f"{uri}: sha256 mismatch after download (the catalogue says "
                                f"{f.sha256}, got {got}); the registry copy is corrupt")
