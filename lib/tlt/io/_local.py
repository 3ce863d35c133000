"""Local file-system side of `tlt.io.storage`: the same operations on plain paths.

Every write goes through `tlt.io.atomic` (temporary sibling + rename), so a reader sees the
old file or the new one, never half of either. OS errors become one-line StorageErrors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from tlt.io._storage_common import storage_error
from tlt.io.atomic import atomic_path, atomic_write_bytes

__all__ = [
    "to_path", "exists", "isdir", "read_bytes", "write_bytes", "write_new", "list_times",
    "list_files", "copy_file",
    "fill_atomically", "delete", "delete_tree", "check_writable",
]

T = TypeVar("T")

# link() errors of file systems without hard links (FAT, some FUSE and SMB mounts).
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK}

_REASONS = {
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a parent of this path is a file, not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
}


def to_path(uri: str | os.PathLike) -> Path:
    """The local path of a plain path or a file:// URI."""
    text = os.fspath(uri)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return Path(text)


@contextlib.contextmanager
def _errors(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn OSError into StorageError("<path>: <reason>")."""
    try:
        yield
    except OSError as exc:
        reason = _REASONS.get(exc.errno or 0)
        if reason is None:
            reason = f"{what} failed: {exc.strerror or exc}"
        raise storage_error(os.fspath(path), reason) from None


def exists(uri: str) -> bool:
    return to_path(uri).exists()


def isdir(uri: str) -> bool:
    return to_path(uri).is_dir()


def read_bytes(uri: str) -> bytes:
    path = to_path(uri)
    with _errors(uri, "read"):
        return path.read_bytes()


def write_bytes(uri: str, data: bytes) -> None:
    with _errors(uri, "write"):
        atomic_write_bytes(to_path(uri), data)


def write_new(uri: str, data: bytes) -> bool:
    """Create ``uri`` with ``data`` unless it exists; False (nothing written) when it does.

    The content is written to a temporary sibling and hard-linked into place: ``link`` fails
    when the name exists, so of two racing writers exactly one wins and readers never see half
    a file. A file system without hard links gets an exclusive create instead (still one
    winner, but a reader racing the write may see it short).
    """
    path = to_path(uri)
    with _errors(uri, "write"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            umask = os.umask(0)  # mkstemp makes 0600 files: give the usual permissions
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            return _create_exclusive(path, data)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _create_exclusive(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def list_times(uri: str) -> dict[str, float]:
    """Modification times (epoch seconds) of every file under folder ``uri``; {} if absent."""
    times: dict[str, float] = {}
    for path in list_files(uri, recursive=True):
        with contextlib.suppress(FileNotFoundError):  # deleted since listed
            times[path] = os.stat(path).st_mtime
    return times


def list_files(uri: str, recursive: bool) -> list[str]:
    """Paths of the files under folder ``uri`` (all depths, or only its own files); [] if absent."""
    root = to_path(uri)
    if root.is_file():
        return [os.fspath(root)]
    if not root.is_dir():
        return []
    base = uri.rstrip("/") or "/"
    found: list[str] = []
    with _errors(uri, "list"):
        if recursive:
            for folder, _dirs, files in os.walk(root):
                rel = os.path.relpath(folder, root)
                for name in files:
                    found.append(os.path.join(base, name) if rel == "." else os.path.join(base, rel, name))
        else:
            found = [os.path.join(base, entry.name) for entry in os.scandir(root) if entry.is_file()]
    return sorted(found)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy one local file onto ``dst`` atomically."""
    src_path = to_path(src)
    if not src_path.is_file():
        raise storage_error(os.fspath(src), "is a folder, not a file" if src_path.is_dir()
                            else "no such file or folder")
    with _errors(dst, "copy"):
        with atomic_path(to_path(dst)) as tmp:
            shutil.copyfile(src_path, tmp)


def fill_atomically(dst: str | os.PathLike, fill: Callable[[str], T]) -> T:
    """Call ``fill(temporary_path)`` and rename the temporary onto ``dst`` when it returns."""
    with _errors(dst, "write"):
        with atomic_path(to_path(dst)) as tmp:
            return fill(os.fspath(tmp))


def delete(uri: str) -> None:
    path = to_path(uri)
    if path.is_dir() and not path.is_symlink():
        raise storage_error(uri, "is a folder, not a file (use delete_tree)")
    with _errors(uri, "delete"):
        path.unlink(missing_ok=True)


def delete_tree(uri: str) -> None:
    path = to_path(uri)
    with _errors(uri, "delete"):
        if path.is_dir() and not path.is_symlink():
            # Move aside first so no reader sees a half-deleted folder at the path.
            trash = path.with_name(f".{path.name}.deleting-{uuid.uuid4().hex[:8]}")
            os.replace(path, trash)
            shutil.rmtree(trash)
        else:
            path.unlink(missing_ok=True)


def check_writable(uri: str) -> None:
    """Create folder ``uri`` if needed and prove a file can be written there."""
    path = to_path(uri)
    with _errors(uri, "write check"):
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".tlt-write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
