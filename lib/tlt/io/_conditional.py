"""Compare-and-swap on one file or object: read it with a version token, write only if unchanged.

Used by `tlt.io.storage.read_with_token` / `write_if_unchanged` (the model registry moves its
aliases this way). The token says which state of the object the reader saw:

- S3: the object's ETag; the swap is a ``PutObject`` with ``If-Match: <ETag>`` (412 when the
  object changed), and ``If-None-Match: *`` when the reader saw no object.
- GCS: the object's generation; the swap uploads with ``ifGenerationMatch=<generation>``
  (0 = must not exist). The read takes the generation first and downloads that generation
  only (``ifGenerationMatch`` on the download), so content and token always agree.
- Local: the SHA-256 of the content; the swap compares and renames the new content into
  place while holding an exclusive ``flock`` on a lock file next to it. Readers need no lock
  (the rename is atomic); every writer of the file must go through the swap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any, Iterator

from tlt.io import _local
from tlt.io._storage_common import get_config, storage_error
from tlt.io.atomic import atomic_write_bytes

__all__ = ["read_with_token", "write_if_unchanged"]

# A GCS read whose object changes between taking its generation and downloading it starts over.
_GCS_READ_ATTEMPTS = 5


def read_with_token(backend: Any, uri: str, bucket: str, key: str) -> tuple[bytes, str] | None:
    """Content and version token of an object (``backend`` None: a local file); None if absent."""
    if backend is None:
        return _local_read(uri)
    if backend.scheme == "s3":
        return _s3_read(backend, uri, bucket, key)
    return _gcs_read(backend, uri, bucket, key)


def write_if_unchanged(backend: Any, uri: str, bucket: str, key: str, data: bytes,
                       token: str | None) -> bool:
    """Write ``data`` only if the object is still at ``token`` (None: only if it is absent).

    Returns:
        True when written; False (nothing written) when the object changed meanwhile.
    """
    if backend is None:
        return _local_swap(uri, data, token)
    if token is None:
        return backend.write_new(uri, bucket, key, data)
    if backend.scheme == "s3":
        return _s3_swap(backend, uri, bucket, key, data, token)
    return _gcs_swap(backend, uri, bucket, key, data, token)


# --- S3 -------------------------------------------------------------------------------------

def _s3_read(backend: Any, uri: str, bucket: str, key: str) -> tuple[bytes, str] | None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    def get() -> tuple[bytes, str] | None:
        try:
            answer = backend.client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _s3_status(exc) == 404:
                return None
            raise
        # Body and ETag come from one response: they describe the same object state.
        return answer["Body"].read(), answer["ETag"]

    return backend._call(uri, bucket, "read", get)


def _s3_swap(backend: Any, uri: str, bucket: str, key: str, data: bytes, token: str) -> bool:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    def put() -> bool:
        try:
            backend.client.put_object(Bucket=bucket, Key=key, Body=data, IfMatch=token)
            return True
        except ClientError as exc:
            # 412: the ETag differs; 404: the object was deleted meanwhile. (409, a racing
            # conditional write in flight, is retried by _call and then gets 412.)
            if _s3_status(exc) in (412, 404):
                return False
            raise

    return backend._call(uri, bucket, "write", put)


def _s3_status(exc: Any) -> int | None:
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code")
    if code in ("NoSuchKey", "NotFound"):
        return 404
    if code == "PreconditionFailed":
        return 412
    return status


# --- GCS ------------------------------------------------------------------------------------

def _gcs_read(backend: Any, uri: str, bucket: str, key: str) -> tuple[bytes, str] | None:
    from google.api_core.exceptions import NotFound, PreconditionFailed  # noqa: PLC0415

    def get() -> tuple[bytes, str] | None:
        timeout = get_config().timeout
        for _ in range(_GCS_READ_ATTEMPTS):
            blob = backend.client.bucket(bucket).get_blob(key, retry=None, timeout=timeout)
            if blob is None:
                return None
            generation = blob.generation  # the download rewrites it from response headers
            try:
                data = blob.download_as_bytes(if_generation_match=generation, retry=None,
                                              timeout=timeout)
            except (PreconditionFailed, NotFound):
                continue  # replaced or deleted between the two calls: look again
            return data, str(generation)
        raise storage_error(uri, f"the object changed on each of {_GCS_READ_ATTEMPTS} reads")

    return backend._call(uri, bucket, "read", get)


def _gcs_swap(backend: Any, uri: str, bucket: str, key: str, data: bytes, token: str) -> bool:
    from google.api_core.exceptions import PreconditionFailed  # noqa: PLC0415

    def put() -> bool:
        try:
            backend._blob(bucket, key).upload_from_string(
                data, content_type="application/octet-stream", if_generation_match=int(token),
                retry=None, timeout=get_config().timeout)
            return True
        except PreconditionFailed:
            return False

    return backend._call(uri, bucket, "write", put)


# --- local ----------------------------------------------------------------------------------

def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _local_read(uri: str) -> tuple[bytes, str] | None:
    path = _local.to_path(uri)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise storage_error(uri, f"read failed: {exc.strerror or exc}") from None
    return data, _digest(data)


@contextlib.contextmanager
def _locked(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on ``.<name>.lock`` beside ``uri`` (threads and processes)."""
    import fcntl  # noqa: PLC0415 - POSIX only; the registry's local CAS needs it

    path = _local.to_path(uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise storage_error(uri, f"cannot lock: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # each open() is its own lock: threads exclude too
        yield
    finally:
        os.close(fd)  # releases the lock


def _local_swap(uri: str, data: bytes, token: str | None) -> bool:
    with _locked(uri):
        current = _local_read(uri)
        if (current[1] if current else None) != token:
            return False
        try:
            atomic_write_bytes(_local.to_path(uri), data)
        except OSError as exc:
            raise storage_error(uri, f"write failed: {exc.strerror or exc}") from None
        return True
