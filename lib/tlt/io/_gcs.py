"""gs:// backend on google-cloud-storage.

With STORAGE_EMULATOR_HOST set (a local emulator), the client uses anonymous credentials and
a stand-in project id; otherwise Application Default Credentials. The library's own retries
are switched off (``retry=None`` on every call) so `with_retries` is the single retry layer.
Atomicity: an object appears only when its upload (single request, or the last chunk of a
resumable upload) completes. `GCSBackend.write_new` uploads with ``ifGenerationMatch=0``,
which GCS refuses with 412 when the object exists.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from tlt.io._storage_common import (
    KNOWN, OTHER, TRANSIENT, cached_client, get_config, run_parallel, with_retries,
)

__all__ = ["GCSBackend"]

_EMULATOR_PROJECT = "tlt-emulator"


def _make_client() -> Any:
    from google.cloud import storage  # noqa: PLC0415 - heavy import, only when gs:// is used

    cfg = get_config()
    project = cfg.gcs_project or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT")
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

        return storage.Client(project=project or _EMULATOR_PROJECT, credentials=AnonymousCredentials())
    return storage.Client(project=project)


def _status_of(exc: BaseException) -> int | None:
    """HTTP status of an API error or of a resumable-media InvalidResponse, if it has one."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _server_message(exc: BaseException) -> str:
    """The server's own error message (JSON ``error.message``), else the exception's text."""
    response = getattr(exc, "response", None)
    try:
        message = response.json()["error"]["message"]  # type: ignore[union-attr]
        if isinstance(message, str) and message:
            return message
    except Exception:  # noqa: BLE001 - no JSON error body: fall back below
        pass
    return str(getattr(exc, "message", None) or exc)


class GCSBackend:
    """Object operations on gs:// URIs; every call is retried and its errors translated."""

    scheme = "gs"

    @property
    def client(self) -> Any:
        return cached_client("gcs", _make_client)

    def _blob(self, bucket: str, key: str, *, chunked: bool = False) -> Any:
        # chunk_size makes uploads above 8 MiB resumable, sent in chunks of that size.
        chunk = get_config().gcs_chunk_size if chunked else None
        return self.client.bucket(bucket).blob(key, chunk_size=chunk)

    # --- error handling ---------------------------------------------------------------------

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            return bool(self.client.bucket(bucket).exists(retry=None, timeout=get_config().timeout))
        except Exception:  # noqa: BLE001 - unknown: let the object error stand
            return True

    def _classifier(self, bucket: str) -> Callable[[BaseException], tuple[str, str]]:
        def classify(exc: BaseException) -> tuple[str, str]:
            import requests  # noqa: PLC0415
            from google.auth.exceptions import DefaultCredentialsError, TransportError  # noqa: PLC0415

            if isinstance(exc, DefaultCredentialsError):
                return KNOWN, ("no Google credentials found (set GOOGLE_APPLICATION_CREDENTIALS "
                               "or run on a machine with a service account)")
            status = _status_of(exc)
            detail = f"HTTP {status}: {_server_message(exc)}" if status else f"{type(exc).__name__}: {exc}"
            if status is not None:
                if status == 429 or status >= 500 or status == 408:
                    return TRANSIENT, detail
                if status == 404:
                    return KNOWN, ("no such object" if self._bucket_exists(bucket)
                                   else "bucket does not exist")
                if status in (401, 403):
                    return KNOWN, f"access denied: {detail}"
                return OTHER, detail
            if isinstance(exc, (requests.ConnectionError, requests.Timeout,
                                requests.exceptions.ChunkedEncodingError, TransportError,
                                ConnectionError, TimeoutError)):
                return TRANSIENT, detail
            if type(exc).__name__ == "DataCorruption":  # checksum mismatch on download: refetch
                return TRANSIENT, detail
            return OTHER, detail

        return classify

    def _call(self, uri: str, bucket: str, what: str, fn: Callable[[], Any]) -> Any:
        return with_retries(uri, what, fn, self._classifier(bucket))

    # --- operations -------------------------------------------------------------------------

    def exists_object(self, uri: str, bucket: str, key: str) -> bool:
        return self._call(uri, bucket, "exists", lambda: bool(
            self._blob(bucket, key).exists(retry=None, timeout=get_config().timeout)))

    def any_under(self, uri: str, bucket: str, prefix: str) -> bool:
        def probe() -> bool:
            blobs = self.client.list_blobs(bucket, prefix=prefix or None, max_results=1, retry=None,
                                           timeout=get_config().timeout)
            return any(True for _ in blobs)

        return self._call(uri, bucket, "list", probe)

    def list_keys(self, uri: str, bucket: str, prefix: str, recursive: bool) -> list[str]:
        def listing() -> list[str]:
            blobs = self.client.list_blobs(bucket, prefix=prefix or None,
                                           delimiter=None if recursive else "/", retry=None,
                                           timeout=get_config().timeout)
            return [blob.name for blob in blobs]

        return self._call(uri, bucket, "list", listing)

    def read_bytes(self, uri: str, bucket: str, key: str) -> bytes:
        return self._call(uri, bucket, "read", lambda: self._blob(bucket, key).download_as_bytes(
            retry=None, timeout=get_config().timeout))

    def write_bytes(self, uri: str, bucket: str, key: str, data: bytes) -> None:
        self._call(uri, bucket, "write", lambda: self._blob(bucket, key, chunked=True).upload_from_string(
            data, content_type="application/octet-stream", retry=None, timeout=get_config().timeout))

    def write_new(self, uri: str, bucket: str, key: str, data: bytes) -> bool:
        """Create-only upload (``ifGenerationMatch=0``); False when the object already exists."""
        from google.api_core.exceptions import PreconditionFailed  # noqa: PLC0415

        def put() -> bool:
            try:
                self._blob(bucket, key).upload_from_string(
                    data, content_type="application/octet-stream", if_generation_match=0,
                    retry=None, timeout=get_config().timeout)
                return True
            except PreconditionFailed:
                return False

        return self._call(uri, bucket, "write", put)

    def list_times(self, uri: str, bucket: str, prefix: str) -> dict[str, float]:
        def listing() -> dict[str, float]:
            blobs = self.client.list_blobs(bucket, prefix=prefix or None, retry=None,
                                           timeout=get_config().timeout)
            return {blob.name: blob.updated.timestamp() for blob in blobs}

        return self._call(uri, bucket, "list", listing)

    def upload_file(self, uri: str, local_path: str, bucket: str, key: str) -> None:
        self._call(uri, bucket, "upload", lambda: self._blob(bucket, key, chunked=True).upload_from_filename(
            local_path, retry=None, timeout=get_config().timeout))

    def download_file(self, uri: str, bucket: str, key: str, local_path: str) -> None:
        self._call(uri, bucket, "download", lambda: self._blob(bucket, key).download_to_filename(
            local_path, retry=None, timeout=get_config().timeout))

    def copy_object(self, uri: str, src_bucket: str, src_key: str, bucket: str, key: str) -> None:
        def rewrite() -> None:
            # rewrite (not copyTo) because large or cross-location copies take several calls.
            source = self._blob(src_bucket, src_key)
            target = self._blob(bucket, key)
            token, _, _ = target.rewrite(source, retry=None, timeout=get_config().timeout)
            while token is not None:
                token, _, _ = target.rewrite(source, token=token, retry=None, timeout=get_config().timeout)

        self._call(uri, src_bucket, "copy", rewrite)

    def delete_object(self, uri: str, bucket: str, key: str) -> None:
        from google.api_core.exceptions import NotFound  # noqa: PLC0415

        def delete() -> None:
            try:
                self._blob(bucket, key).delete(retry=None, timeout=get_config().timeout)
            except NotFound:
                # A missing object is already deleted; a missing bucket is an error.
                if not self._bucket_exists(bucket):
                    raise

        self._call(uri, bucket, "delete", delete)

    def delete_keys(self, uri: str, bucket: str, keys: list[str]) -> None:
        run_parallel(lambda key: self.delete_object(f"gs://{bucket}/{key}", bucket, key), keys,
                     desc=f"delete {uri}")

    def abort_uploads(self, uri: str, bucket: str, prefix: str) -> int:
        """Nothing to do: an unfinished resumable upload is invisible and GCS expires it."""
        return 0

    def check_bucket(self, uri: str, bucket: str) -> None:
        self._call(uri, bucket, "bucket check", lambda: self.client.get_bucket(
            bucket, retry=None, timeout=get_config().timeout))
