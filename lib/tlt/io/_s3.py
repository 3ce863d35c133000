"""s3:// backend on boto3 (AWS S3, MinIO, Ceph and other S3-compatible stores).

Endpoints: boto3 itself honours AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL; `configure(
s3_endpoint_url=...)` or TLT_S3_ENDPOINT_URL override both. botocore's own retries are switched
off so that `with_retries` is the single, configurable retry layer (no attempts multiplied).
Atomicity: a put is all-or-nothing, and a multipart upload only becomes an object when it is
completed (s3transfer aborts it on failure). `S3Backend.write_new` is a put with
``If-None-Match: *``: S3 answers 412 when the key exists (AWS since 2024, MinIO and moto too; a
store that ignores the header cannot make writes create-only).
"""

from __future__ import annotations

import io
import os
from typing import Any, Callable

from tlt.io._storage_common import (
    KNOWN, OTHER, TRANSIENT, cached_client, get_config, register_secret, with_retries,
)

__all__ = ["S3Backend"]

# Error codes S3 (and MinIO) use for "slow down / try again".
_RETRY_CODES = {
    "ConditionalRequestConflict", "Throttling", "ThrottlingException", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequests",
    "TooManyRequestsException", "OperationAborted",
}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                     "InvalidToken", "TokenRefreshRequired"}


def _make_client() -> Any:
    import boto3  # noqa: PLC0415 - heavy import, only when s3:// is used
    from botocore.config import Config  # noqa: PLC0415

    cfg = get_config()
    endpoint = cfg.s3_endpoint_url
    overridden = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    # MinIO and most self-hosted stores serve buckets as paths, not as sub-domains.
    style = cfg.s3_addressing_style or ("path" if overridden else None)
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "total_max_attempts": 1},
        "max_pool_connections": max(10, 2 * cfg.max_workers),
        "connect_timeout": min(cfg.timeout, 30.0),
        "read_timeout": cfg.timeout,
    }
    if style:
        options["s3"] = {"addressing_style": style}
    session = boto3.session.Session()
    client = session.client("s3", endpoint_url=endpoint, config=Config(**options))
    credentials = session.get_credentials()
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        register_secret(frozen.access_key, frozen.secret_key, frozen.token)
    return client


class S3Backend:
    """Object operations on s3:// URIs; every call is retried and its errors translated."""

    scheme = "s3"

    @property
    def client(self) -> Any:
        return cached_client("s3", _make_client)

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig  # noqa: PLC0415

        cfg = get_config()
        return TransferConfig(multipart_threshold=cfg.multipart_threshold,
                              multipart_chunksize=cfg.multipart_chunksize,
                              max_concurrency=cfg.max_workers)

    # --- error handling ---------------------------------------------------------------------

    def _bucket_exists(self, bucket: str) -> bool:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            return _status(exc) != 404 and _code(exc) not in ("NoSuchBucket", "404", "NotFound")
        except Exception:  # noqa: BLE001 - unknown: let the object error stand
            return True
        return True

    def _classifier(self, bucket: str) -> Callable[[BaseException], tuple[str, str]]:
        def classify(exc: BaseException) -> tuple[str, str]:
            from boto3.exceptions import RetriesExceededError, S3UploadFailedError  # noqa: PLC0415
            from botocore.exceptions import (  # noqa: PLC0415
                ClientError, ConnectionError as BotoConnectionError, HTTPClientError,
                IncompleteReadError, NoCredentialsError,
            )
            from urllib3.exceptions import HTTPError as Urllib3Error  # noqa: PLC0415

            if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
                exc = exc.__context__  # boto3 wraps part-upload errors; judge the original
            if isinstance(exc, ClientError):
                code, status = _code(exc), _status(exc)
                message = exc.response.get("Error", {}).get("Message") or ""
                detail = f"{code} (HTTP {status}){': ' + message if message else ''}"
                if status == 429 or (status or 0) >= 500 or code in _RETRY_CODES:
                    return TRANSIENT, detail
                if code == "NoSuchBucket":
                    return KNOWN, "bucket does not exist"
                if code in _NOT_FOUND_CODES or status == 404:
                    # HEAD answers carry no code: ask whether the bucket itself is missing.
                    return KNOWN, ("no such object" if self._bucket_exists(bucket)
                                   else "bucket does not exist")
                if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled") or status == 403:
                    return KNOWN, f"access denied: {detail}"
                if code in _CREDENTIAL_CODES:
                    return KNOWN, f"credentials rejected: {detail}"
                return OTHER, detail
            if isinstance(exc, NoCredentialsError):
                return KNOWN, ("no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY, a profile, or an instance role)")
            # Connection refused/reset, timeouts, and bodies cut short while streaming.
            if isinstance(exc, (BotoConnectionError, HTTPClientError, RetriesExceededError,
                                IncompleteReadError, Urllib3Error, ConnectionError, TimeoutError)):
                return TRANSIENT, f"{type(exc).__name__}: {exc}"
            return OTHER, f"{type(exc).__name__}: {exc}"

        return classify

    def _call(self, uri: str, bucket: str, what: str, fn: Callable[[], Any]) -> Any:
        return with_retries(uri, what, fn, self._classifier(bucket))

    # --- operations -------------------------------------------------------------------------

    def exists_object(self, uri: str, bucket: str, key: str) -> bool:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        def head() -> bool:
            try:
                self.client.head_object(Bucket=bucket, Key=key)
                return True
            except ClientError as exc:
                if _status(exc) == 404:
                    return False
                raise

        return self._call(uri, bucket, "exists", head)

    def any_under(self, uri: str, bucket: str, prefix: str) -> bool:
        def probe() -> bool:
            answer = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
            return answer.get("KeyCount", 0) > 0

        return self._call(uri, bucket, "list", probe)

    def list_keys(self, uri: str, bucket: str, prefix: str, recursive: bool) -> list[str]:
        def listing() -> list[str]:
            args = {"Bucket": bucket, "Prefix": prefix}
            if not recursive:
                args["Delimiter"] = "/"
            keys: list[str] = []
            for page in self.client.get_paginator("list_objects_v2").paginate(**args):
                keys.extend(item["Key"] for item in page.get("Contents", ()))
            return keys

        return self._call(uri, bucket, "list", listing)

    def read_bytes(self, uri: str, bucket: str, key: str) -> bytes:
        return self._call(uri, bucket, "read",
                          lambda: self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def write_bytes(self, uri: str, bucket: str, key: str, data: bytes) -> None:
        if len(data) < get_config().multipart_threshold:
            fn = lambda: self.client.put_object(Bucket=bucket, Key=key, Body=data)  # noqa: E731
        else:
            fn = lambda: self.client.upload_fileobj(  # noqa: E731
                io.BytesIO(data), bucket, key, Config=self._transfer_config())
        self._call(uri, bucket, "write", fn)

    def write_new(self, uri: str, bucket: str, key: str, data: bytes) -> bool:
        """Create-only put (``If-None-Match: *``); False when the key already exists."""
        from botocore.exceptions import ClientError  # noqa: PLC0415

        def put() -> bool:
            try:
                self.client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
                return True
            except ClientError as exc:
                # 412: the key exists. (409 ConditionalRequestConflict, a racing conditional
                # write still in flight, is retried: S3 asks for that, and the retry gets 412.)
                if _status(exc) == 412 or _code(exc) == "PreconditionFailed":
                    return False
                raise

        return self._call(uri, bucket, "write", put)

    def list_times(self, uri: str, bucket: str, prefix: str) -> dict[str, float]:
        def listing() -> dict[str, float]:
            found: dict[str, float] = {}
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    found[item["Key"]] = item["LastModified"].timestamp()
            return found

        return self._call(uri, bucket, "list", listing)

    def upload_file(self, uri: str, local_path: str, bucket: str, key: str) -> None:
        self._call(uri, bucket, "upload", lambda: self.client.upload_file(
            local_path, bucket, key, Config=self._transfer_config()))

    def download_file(self, uri: str, bucket: str, key: str, local_path: str) -> None:
        self._call(uri, bucket, "download", lambda: self.client.download_file(
            bucket, key, local_path, Config=self._transfer_config()))

    def copy_object(self, uri: str, src_bucket: str, src_key: str, bucket: str, key: str) -> None:
        # A managed copy: server-side, in parts above the multipart threshold.
        self._call(uri, src_bucket, "copy", lambda: self.client.copy(
            {"Bucket": src_bucket, "Key": src_key}, bucket, key, Config=self._transfer_config()))

    def delete_object(self, uri: str, bucket: str, key: str) -> None:
        self._call(uri, bucket, "delete", lambda: self.client.delete_object(Bucket=bucket, Key=key))

    def delete_keys(self, uri: str, bucket: str, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[start:start + 1000]]

            def delete_batch(batch: list[dict[str, str]] = batch) -> None:
                answer = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                errors = answer.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise RuntimeError(f"{len(errors)} object(s) not deleted, first "
                                       f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}")

            self._call(uri, bucket, "delete", delete_batch)

    def abort_uploads(self, uri: str, bucket: str, prefix: str) -> int:
        """Abort the unfinished multipart uploads under ``prefix`` (a killed writer's parts).

        Returns:
            How many were aborted.
        """
        def abort() -> int:
            pending = []
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=bucket, Prefix=prefix):
                pending.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", ()))
            for key, upload_id in pending:
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            return len(pending)

        return self._call(uri, bucket, "abort uploads", abort)

    def check_bucket(self, uri: str, bucket: str) -> None:
        self._call(uri, bucket, "bucket check", lambda: self.client.head_bucket(Bucket=bucket))


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: Any) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
