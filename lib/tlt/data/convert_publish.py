"""Publishing convert's output in one step a reader sees whole, and clearing killed runs' leftovers.

Shards keep TLT's names (readers glob them and read the fold from the name), so a new run cannot
sit beside an old one under other names. The output is built in a staging folder, then:

- Local folder holding only files (the common case: a folder of shards): the staging folder is
  a sibling, it receives hard links of the folder's other files, and the two folders are swapped
  in one ``renameat2(RENAME_EXCHANGE)`` call. Every reader, globbing ones too, sees the old output
  or the new one; a kill at any point leaves one of them.
- Object storage, or a local folder that cannot be swapped (it has sub-folders, is a mount point
  or the working directory, or the file system cannot exchange): ``metadata.json`` is the commit
  point. It is deleted first, the shards are written and stale ones deleted, and metadata.json
  is written last. Whenever metadata.json exists, the shards it names are exactly the shards
  there; while it is missing the folder holds no complete output.

Staging folders carry the writer's pid, so a rerun deletes those of dead runs (`clear_leftovers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from tlt.artifacts import METADATA_FILE
from tlt.io import storage

__all__ = ["staging_folder", "clear_leftovers", "publish"]

log = logging.getLogger("tlt.data.convert")

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# errno values meaning "this file system or kernel cannot exchange": fall back to the commit point.
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EXDEV, errno.ENOTSUP}
_REMOTE_PREFIX = "tlt-convert-"
_TEMP_FILE = re.compile(r"\.(metadata|status)\.json\..+\.tmp")


def _shard_pattern(output_name: str) -> re.Pattern:
    return re.compile(re.escape(output_name) + r"-fold-\d{3}-of-\d{3}-shard-\d{5}-of-\d{5}")


def _tag() -> str:
    return f"convert-{os.getpid()}-"


def _owner_alive(name: str) -> bool:
    """Whether the process that made staging folder ``name`` still runs (not this one)."""
    match = re.search(r"convert-(\d+)-", name)
    if not match or int(match.group(1)) == os.getpid():
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staging_folder(out_dir: str, output_name: str) -> Iterator[Path]:
    """A new local folder to build the output in; removed when the block ends.

    Local outputs stage in a sibling of ``out_dir`` (same file system, so it can be swapped in),
    or inside ``out_dir`` when its parent is not writable; remote ones in the temp folder.
    """
    if storage.is_remote(out_dir):
        path = tempfile.mkdtemp(prefix=_REMOTE_PREFIX + f"{os.getpid()}-")
    else:
        out = Path(out_dir).resolve()
        try:
            path = tempfile.mkdtemp(prefix=f".{out.name}.{_tag()}", suffix=".partial",
                                    dir=out.parent)
        except OSError:
            path = tempfile.mkdtemp(prefix=f".{output_name}.{_tag()}", suffix=".partial",
                                    dir=out)
    try:
        yield Path(path)
    finally:  # after a swap this is the previous output
        shutil.rmtree(path, ignore_errors=True)


def _remove(path: Path) -> None:
    log.info("Removing %s, left by a run that did not finish", path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clear_leftovers(out_dir: str, output_name: str) -> None:
    """Delete what killed runs left: staging folders (``*.partial``) and ``*.tmp`` files.

    Staging folders of a process that still runs are kept.
    """
    if storage.is_remote(out_dir):
        temp = Path(tempfile.gettempdir())
        candidates = [(temp, re.compile(re.escape(_REMOTE_PREFIX) + r"\d+-.*"))]
    else:
        out = Path(out_dir).resolve()
        if not out.is_dir():
            return
        candidates = [
            (out, re.compile(re.escape(f".{output_name}.") + r".*\.partial")),
            (out, _TEMP_FILE),
            (out.parent, re.compile(re.escape(f".{out.name}.convert-") + r"\d+-.*\.partial")),
        ]
    for folder, pattern in candidates:
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            stale = [Path(e.path) for e in entries
                     if pattern.fullmatch(e.name) and not _owner_alive(e.name)]
        for path in stale:
            _remove(path)


def _exchange(a: Path, b: Path) -> bool:
    """Swap folders ``a`` and ``b`` atomically; False when the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename is None:
        return False
    if rename(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swappable(out: Path, staging: Path) -> bool:
    if staging.parent != out.parent or not out.is_dir() or os.path.ismount(out):
        return False
    cwd = Path.cwd().resolve()
    if cwd == out or out in cwd.parents:
        return False
    with os.scandir(out) as entries:
        return all(e.is_file(follow_symlinks=False) or e.is_symlink() for e in entries)


def _link_others(out: Path, staging: Path, output_name: str) -> bool:
    """Hard-link ``out``'s files other than this output's into ``staging``; False if one cannot."""
    ours = _shard_pattern(output_name)
    with os.scandir(out) as entries:
        others = [e for e in entries if e.name != METADATA_FILE and not ours.fullmatch(e.name)]
    try:
        for entry in others:
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), staging / entry.name)
            else:
                os.link(entry.path, staging / entry.name)
    except OSError as err:
        log.debug("cannot link %s into the staging folder (%s); publishing file by file",
                  out, err)
        return False
    return True


def _move(staging: Path, out: Path, name: str) -> None:
    """One step of the file-by-file publishing (a kill may land between two of them)."""
    os.replace(staging / name, out / name)


def _commit_local(staging: Path, out: Path, names: list[str], output_name: str) -> None:
    (out / METADATA_FILE).unlink(missing_ok=True)
    for name in names:
        _move(staging, out, name)
    ours, kept = _shard_pattern(output_name), set(names)
    for path in out.iterdir():
        if ours.fullmatch(path.name) and path.name not in kept:
            path.unlink()
    _move(staging, out, METADATA_FILE)


def _commit_remote(staging: Path, out_dir: str, names: list[str], output_name: str) -> None:
    storage.delete(storage.join(out_dir, METADATA_FILE))
    for name in names:
        storage.upload_file(staging / name, storage.join(out_dir, name))
    ours, kept = _shard_pattern(output_name), set(names)
    for uri in storage.list_files(out_dir, recursive=False):
        base = uri.rstrip("/").rsplit("/", 1)[-1]
        if ours.fullmatch(base) and base not in kept:
            storage.delete(uri)
    storage.upload_file(staging / METADATA_FILE, storage.join(out_dir, METADATA_FILE))


def publish(staging: Path, out_dir: str, names: list[str], output_name: str) -> None:
    """Make the shards ``names`` and ``metadata.json`` in ``staging`` the output at ``out_dir``.

    Shards of ``output_name`` that are not in ``names`` (an earlier run with other fold or shard
    counts) are removed; other files in ``out_dir`` are kept.
    """
    if storage.is_remote(out_dir):
        _commit_remote(staging, out_dir, names, output_name)
        return
    out = Path(out_dir).resolve()
    if _swappable(out, staging) and _link_others(out, staging, output_name) \
            and _exchange(staging, out):
        return
    _commit_local(staging, out, names, output_name)
