"""One API over local paths, gs:// (Google Cloud Storage) and s3:// (AWS S3, MinIO).

Stages work on local paths; this module stages their inputs down (`staged_input`) and publishes
their outputs up (`staged_output`). Guarantees:

- Atomic writes: a reader sees the old content or the new, never half a file or object (local:
  temporary + rename; object stores: single put, or a multipart/resumable upload that becomes
  an object only when it completes).
- Create-only writes (`write_new`): of several writers racing for one name, exactly one
  creates it (local hard link, S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``); the model
  registry commits versions this way.
- Compare-and-swap (`read_with_token` + `write_if_unchanged`): a write that lands only if the
  object is still as it was read (S3 ``If-Match: <ETag>``, GCS ``ifGenerationMatch=<generation>``,
  local lock + compare + rename); the model registry moves its aliases this way.
- Transient failures (connection errors, timeouts, 429, 5xx, throttling) are retried with
  exponential backoff; `configure(retry_attempts=..., retry_base_delay=...)` tunes it.
- Errors are `StorageError("<uri>: <what went wrong>")` on one line, credentials scrubbed.
- Endpoints: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (read by boto3), TLT_S3_ENDPOINT_URL or
  `configure(s3_endpoint_url=...)` for S3-compatible stores; STORAGE_EMULATOR_HOST for a GCS
  emulator. Clients are created on first use and cached per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

from tlt.errors import StorageError
from tlt.io import _conditional, _local
from tlt.io._gcs import GCSBackend
from tlt.io._s3 import S3Backend
from tlt.io._storage_common import (
    StorageConfig, configure, parse_uri, reset_clients, reset_config, run_parallel, storage_error,
)
from tlt.io.atomic import atomic_dir

__all__ = [
    "is_remote", "join", "exists", "isdir", "read_bytes", "read_text", "write_bytes", "write_text",
    "write_new", "read_with_token", "write_if_unchanged", "list_files", "list_times", "copy",
    "upload_file", "download_file", "download_tree", "upload_tree",
    "delete", "delete_tree", "check_writable_prefix", "staged_input", "staged_output",
    "configure", "reset_clients", "reset_config", "StorageConfig", "StorageError",
]

log = logging.getLogger("tlt.io.storage")

_BACKENDS: dict[str, Any] = {"s3": S3Backend(), "gs": GCSBackend()}
# Written last by upload_tree, so a reader that waits for it sees a complete artifact.
_LAST_FILES = ("metadata.json",)


def is_remote(uri: str | os.PathLike) -> bool:
    """True for gs:// and s3:// URIs, False for local paths (and file:// URIs)."""
    return isinstance(uri, str) and uri.startswith(("gs://", "s3://"))


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a local path or a URI ("s3://b" + "x", "y" -> "s3://b/x/y").

    Leading and trailing slashes of ``parts`` are ignored, so a part never resets the path.
    """
    pieces = [p.strip("/") for p in parts if p and p.strip("/")]
    if is_remote(base):
        return "/".join([base.rstrip("/")] + pieces)
    return os.path.join(os.fspath(base), *pieces)


def _split(uri: str) -> tuple[Any, str, str]:
    scheme, bucket, key = parse_uri(uri)
    return _BACKENDS[scheme], bucket, key


def _object(uri: str) -> tuple[Any, str, str]:
    """Backend, bucket and key of a URI that must name one object."""
    backend, bucket, key = _split(uri)
    if not key or key.endswith("/"):
        raise storage_error(uri, "names a bucket or folder, not an object")
    return backend, bucket, key


def _folder(key: str) -> str:
    """The listing prefix of a folder key ("" for the bucket root)."""
    return key.rstrip("/") + "/" if key.strip("/") else ""


def exists(uri: str | os.PathLike) -> bool:
    """True when ``uri`` is a file/object, or a folder/prefix with anything under it.

    Raises:
        StorageError: the bucket does not exist, or the store cannot be reached.
    """
    if not is_remote(uri):
        return _local.exists(uri)
    backend, bucket, key = _split(uri)
    if key and not key.endswith("/") and backend.exists_object(uri, bucket, key):
        return True
    return backend.any_under(uri, bucket, _folder(key))


def isdir(uri: str | os.PathLike) -> bool:
    """True for a local folder, or a remote prefix with at least one object under it."""
    if not is_remote(uri):
        return _local.isdir(uri)
    backend, bucket, key = _split(uri)
    return backend.any_under(uri, bucket, _folder(key))


def read_bytes(uri: str | os.PathLike) -> bytes:
    """The whole content of a file or object."""
    if not is_remote(uri):
        return _local.read_bytes(uri)
    backend, bucket, key = _object(uri)
    return backend.read_bytes(uri, bucket, key)


def read_text(uri: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The content of a file or object decoded as ``encoding``."""
    data = read_bytes(uri)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise storage_error(os.fspath(uri), f"not valid {encoding} text ({exc.reason} at byte {exc.start})") from None


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a file or object atomically (readers see old or new, never half)."""
    if not is_remote(uri):
        _local.write_bytes(uri, bytes(data))
        return
    backend, bucket, key = _object(uri)
    backend.write_bytes(uri, bucket, key, bytes(data))


def write_new(uri: str | os.PathLike, data: bytes) -> bool:
    """Create a file or object holding ``data`` only if nothing is there yet.

    Of several writers racing for the same name exactly one gets True; the others get False and
    change nothing. Local: temporary file + hard link. S3: ``PutObject`` with
    ``If-None-Match: *``. GCS: upload with ``ifGenerationMatch=0``. (An S3-compatible store that
    ignores ``If-None-Match`` cannot give this guarantee.)

    Returns:
        True when this call created it, False when it already existed.
    """
    if not is_remote(uri):
        return _local.write_new(os.fspath(uri), bytes(data))
    backend, bucket, key = _object(uri)
    return backend.write_new(uri, bucket, key, bytes(data))


def read_with_token(uri: str | os.PathLike) -> tuple[bytes, str] | None:
    """The content of a file or object and a token naming that state of it, for a later swap.

    Returns:
        ``(content, token)``, or None when nothing is there. The token is opaque (S3 ETag,
        GCS generation, local SHA-256) and only means something to `write_if_unchanged`.
    """
    if not is_remote(uri):
        return _conditional.read_with_token(None, os.fspath(uri), "", "")
    backend, bucket, key = _object(uri)
    return _conditional.read_with_token(backend, uri, bucket, key)


def write_if_unchanged(uri: str | os.PathLike, data: bytes, token: str | None) -> bool:
    """Compare-and-swap: write ``data`` only if the object is still in the state ``token`` names.

    ``token`` comes from `read_with_token`; None means "only if nothing is there" (as
    `write_new`). Of several writers swapping from the same token exactly one succeeds. The
    write is atomic: readers see the old content or the new. Local files written this way must
    only ever be written this way (the swap holds a lock that plain writes do not take).

    Returns:
        True when written; False (nothing written) when the object changed since the read.
    """
    if not is_remote(uri):
        return _conditional.write_if_unchanged(None, os.fspath(uri), "", "", bytes(data), token)
    backend, bucket, key = _object(uri)
    return _conditional.write_if_unchanged(backend, uri, bucket, key, bytes(data), token)


def write_text(uri: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` atomically, encoded as ``encoding``."""
    write_bytes(uri, text.encode(encoding))


def list_files(uri: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Sorted full paths/URIs of the files under a folder or prefix.

    Args:
        uri: folder or prefix; a file/object names just itself.
        recursive: all depths, or only the folder's own files.

    Returns:
        [] when nothing is there (a missing bucket raises StorageError).
    """
    if not is_remote(uri):
        return _local.list_files(os.fspath(uri), recursive)
    backend, bucket, key = _split(uri)
    scheme = backend.scheme
    keys = backend.list_keys(uri, bucket, _folder(key), recursive)
    found = sorted(f"{scheme}://{bucket}/{k}" for k in keys if not k.endswith("/"))
    if not found and key and not key.endswith("/") and backend.exists_object(uri, bucket, key):
        found = [f"{scheme}://{bucket}/{key}"]
    return found


def list_times(uri: str | os.PathLike) -> dict[str, float]:
    """Every file under a folder or prefix with its last modification time (epoch seconds).

    Returns:
        {full path/URI: time}; {} when nothing is there (a missing bucket raises StorageError).
    """
    if not is_remote(uri):
        return _local.list_times(os.fspath(uri))
    backend, bucket, key = _split(uri)
    times = backend.list_times(uri, bucket, _folder(key))
    return {f"{backend.scheme}://{bucket}/{k}": t for k, t in times.items() if not k.endswith("/")}


def copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy one file/object from any backend to any backend (server-side within one store)."""
    if not is_remote(src):
        upload_file(src, dst)
    elif not is_remote(dst):
        download_file(src, dst)
    else:
        src_backend, src_bucket, src_key = _object(src)
        dst_backend, dst_bucket, dst_key = _object(dst)
        if src_backend is dst_backend:
            try:
                src_backend.copy_object(src, src_bucket, src_key, dst_bucket, dst_key)
            except StorageError:
                # The call names the source; blame the destination when its bucket is missing.
                if dst_bucket != src_bucket and not dst_backend._bucket_exists(dst_bucket):
                    raise storage_error(dst, "bucket does not exist") from None
                raise
            return
        with tempfile.TemporaryDirectory(prefix="tlt-copy-") as tmp:
            local = os.path.join(tmp, "object")
            download_file(src, local)
            upload_file(local, dst)


def upload_file(local_path: str | os.PathLike, uri: str | os.PathLike) -> None:
    """Copy a local file to ``uri`` (atomic at the destination; S3 multipart / GCS resumable)."""
    path = _local.to_path(local_path)
    if not path.is_file():
        raise storage_error(os.fspath(local_path), "is a folder, not a file" if path.is_dir()
                            else "no such file or folder")
    if not is_remote(uri):
        _local.copy_file(path, uri)
        return
    backend, bucket, key = _object(uri)
    backend.upload_file(uri, os.fspath(path), bucket, key)


def download_file(uri: str | os.PathLike, local_path: str | os.PathLike) -> None:
    """Copy one file/object to ``local_path`` (written to a temporary, then renamed)."""
    if not is_remote(uri):
        _local.copy_file(uri, local_path)
        return
    backend, bucket, key = _object(uri)
    _local.fill_atomically(local_path, lambda tmp: backend.download_file(uri, bucket, key, tmp))


def _relative(uri: str, file: str) -> str:
    """Path of ``file`` relative to folder ``uri`` (its base name when it is ``uri`` itself)."""
    root = os.fspath(uri).rstrip("/")
    if file.rstrip("/") == root:
        return posixpath.basename(root)
    return file[len(root) + 1:]


def download_tree(uri: str | os.PathLike, local_dir: str | os.PathLike) -> Path:
    """Copy every file under folder/prefix ``uri`` into ``local_dir``, keeping the layout.

    Returns:
        ``local_dir`` as a Path.

    Raises:
        StorageError: nothing is under ``uri``, an object name would escape ``local_dir``, or a
            transfer failed.
    """
    dest = Path(local_dir)
    files = list_files(uri, recursive=True)
    if not files:
        if is_remote(uri):
            raise storage_error(uri, "no objects under this prefix")
        if not _local.isdir(uri):  # an empty local folder is a valid (empty) tree
            raise storage_error(os.fspath(uri), "no such file or folder")
    root = dest.resolve()
    jobs = []
    for file in files:
        target = (dest / _relative(os.fspath(uri), file)).resolve()
        if root != target and root not in target.parents:
            raise storage_error(file, f"object name escapes the destination folder {dest}")
        jobs.append((file, target))
    dest.mkdir(parents=True, exist_ok=True)
    run_parallel(lambda job: download_file(job[0], job[1]), jobs, desc=f"download {uri}")
    return dest


def upload_tree(local_dir: str | os.PathLike, uri: str | os.PathLike) -> list[str]:
    """Copy every file under ``local_dir`` to folder/prefix ``uri``, keeping the layout.

    metadata.json files go last, so a reader waiting for them finds a complete artifact. If a
    transfer fails, the objects this call already wrote are deleted (best effort) before the
    error is raised.

    Returns:
        Sorted destination paths/URIs of the files written.
    """
    src = _local.to_path(local_dir)
    if not src.is_dir():
        raise storage_error(os.fspath(local_dir), "is a file, not a folder" if src.exists()
                            else "no such file or folder")
    rels = [_relative(os.fspath(src), f) for f in _local.list_files(os.fspath(src), True)]
    jobs = [(os.path.join(src, rel), join(uri, *rel.split(os.sep))) for rel in rels]
    first = [j for j in jobs if os.path.basename(j[0]) not in _LAST_FILES]
    last = [j for j in jobs if os.path.basename(j[0]) in _LAST_FILES]
    done: list[str] = []
    lock = threading.Lock()

    def send(job: tuple[str, str]) -> None:
        upload_file(job[0], job[1])
        with lock:
            done.append(job[1])

    try:
        run_parallel(send, first, desc=f"upload {uri}")
        run_parallel(send, last, desc=f"upload {uri}")
    except BaseException:
        for written in done:
            with contextlib.suppress(StorageError):
                delete(written)
        raise
    return sorted(done)


def delete(uri: str | os.PathLike) -> None:
    """Delete one file/object; a missing one is not an error (a missing bucket is)."""
    if not is_remote(uri):
        _local.delete(os.fspath(uri))
        return
    backend, bucket, key = _object(uri)
    backend.delete_object(uri, bucket, key)


def delete_tree(uri: str | os.PathLike) -> None:
    """Delete a folder/prefix and everything under it (nothing there is not an error).

    On S3 this includes unfinished multipart uploads under the prefix: the invisible, billed
    parts a writer killed mid-upload leaves behind.
    """
    if not is_remote(uri):
        _local.delete_tree(os.fspath(uri))
        return
    backend, bucket, key = _split(uri)
    if not key.strip("/"):
        raise storage_error(uri, "refusing to delete a whole bucket; name a folder under it")
    keys = backend.list_keys(uri, bucket, _folder(key), True)
    backend.delete_keys(uri, bucket, keys)
    backend.abort_uploads(uri, bucket, _folder(key))


def check_writable_prefix(uri: str | os.PathLike) -> None:
    """Fail early, before long work, when outputs could not be written under ``uri``.

    Local: the folder is created and a probe file written and removed. Remote: the bucket must
    exist and a probe object is written and deleted.

    Raises:
        StorageError: e.g. "s3://nope/out: bucket does not exist", "...: access denied: ...".
    """
    if not is_remote(uri):
        _local.check_writable(os.fspath(uri))
        return
    backend, bucket, _key = _split(uri)
    backend.check_bucket(uri, bucket)
    probe = join(uri, f".tlt-write-probe-{uuid.uuid4().hex}")
    write_bytes(probe, b"")
    delete(probe)


def _basename(uri: str) -> str:
    _scheme, bucket, key = parse_uri(uri)
    return posixpath.basename(key.rstrip("/")) or bucket


@contextlib.contextmanager
def staged_input(uri: str | os.PathLike) -> Iterator[Path]:
    """A local path holding the input at ``uri`` for the duration of the block.

    Local paths are yielded as they are. A remote object is downloaded to a temporary folder
    (keeping its base name), a remote prefix downloaded as a tree; both removed afterwards.
    """
    if not is_remote(uri):
        path = _local.to_path(uri)
        if not path.exists():
            raise storage_error(os.fspath(uri), "no such file or folder")
        yield path
        return
    backend, bucket, key = _split(uri)
    tmp = Path(tempfile.mkdtemp(prefix="tlt-in-"))
    try:
        local = tmp / _basename(uri)
        if key and not key.endswith("/") and backend.exists_object(uri, bucket, key):
            download_file(uri, local)
        else:
            download_tree(uri, local)
        yield local
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_output(uri: str | os.PathLike) -> Iterator[Path]:
    """A local folder to fill; published at ``uri`` only when the block succeeds.

    Local: the folder is renamed onto ``uri`` (replacing an old one in one step). Remote: the
    files are uploaded (metadata.json last), then objects left under the prefix by an earlier
    run are deleted. If the block raises, nothing is published.
    """
    if not is_remote(uri):
        with atomic_dir(_local.to_path(uri)) as tmp:
            yield tmp
        return
    _split(uri)  # reject a malformed URI before any work is done
    tmp = Path(tempfile.mkdtemp(prefix="tlt-out-"))
    try:
        yield tmp
        written = set(upload_tree(tmp, uri))
        stale = [f for f in list_files(uri, recursive=True) if f not in written]
        run_parallel(delete, stale, desc=f"clean {uri}")
        log.debug("published %d file(s) to %s", len(written), uri)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
