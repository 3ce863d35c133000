"""Shared machinery of the storage backends: settings, client cache, retries, secret scrubbing.

Kept apart from `tlt.io.storage` so the backends (`_s3`, `_gcs`, `_local`) can use it without
importing the public module (which imports them).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import random
import re
import threading
import time
from typing import Any, Callable, Iterable, TypeVar

from tlt.errors import StorageError

__all__ = [
    "StorageConfig",
    "get_config",
    "configure",
    "reset_config",
    "cached_client",
    "reset_clients",
    "register_secret",
    "scrub",
    "storage_error",
    "with_retries",
    "run_parallel",
    "parse_uri",
    "TRANSIENT",
    "KNOWN",
    "OTHER",
]

log = logging.getLogger("tlt.io.storage")

T = TypeVar("T")

MiB = 1024 * 1024
_GCS_CHUNK_UNIT = 256 * 1024  # GCS resumable chunks must be multiples of 256 KiB.
_S3_MIN_PART = 5 * MiB  # S3 rejects non-final multipart parts smaller than 5 MiB.

# How a backend classifies an exception (see `with_retries`).
TRANSIENT = "transient"  # worth retrying: connection errors, 429, 5xx, throttling
KNOWN = "known"  # a condition with a fixed wording: "no such object", "bucket does not exist"
OTHER = "other"  # anything else: reported as "<what> failed: <detail>"


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    """Settings of every storage operation in this process.

    Attributes:
        retry_attempts: total attempts of one operation on transient errors (>= 1).
        retry_base_delay: seconds before the first retry; doubles at each further retry.
        retry_max_delay: upper bound of one retry delay, in seconds.
        s3_endpoint_url: S3 endpoint (MinIO, Ceph...). None lets boto3 pick it, which honours
            AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL natively.
        s3_addressing_style: "path", "virtual" or "auto". None means "path" when an endpoint
            override is in effect (what MinIO expects) and boto3's default otherwise.
        multipart_threshold: S3 files at least this large are uploaded in parts.
        multipart_chunksize: size of one S3 part (>= 5 MiB).
        gcs_chunk_size: chunk of a GCS resumable upload (a multiple of 256 KiB); the client
            switches to resumable uploads above 8 MiB.
        gcs_project: project of the GCS client; None reads GOOGLE_CLOUD_PROJECT.
        max_workers: parallel transfers in upload_tree / download_tree / delete_tree.
        timeout: seconds of one HTTP request before it counts as a transient failure.
    """

    retry_attempts: int = 5
    retry_base_delay: float = 0.5
    retry_max_delay: float = 20.0
    s3_endpoint_url: str | None = None
    s3_addressing_style: str | None = None
    multipart_threshold: int = 8 * MiB
    multipart_chunksize: int = 8 * MiB
    gcs_chunk_size: int = 8 * MiB
    gcs_project: str | None = None
    max_workers: int = 8
    timeout: float = 120.0

    def validate(self) -> "StorageConfig":
        """Return self, or raise StorageError naming the first out-of-range setting."""
        checks = [
            ("retry_attempts", self.retry_attempts >= 1, "must be >= 1"),
            ("retry_base_delay", self.retry_base_delay >= 0, "must be >= 0"),
            ("retry_max_delay", self.retry_max_delay >= 0, "must be >= 0"),
            ("multipart_threshold", self.multipart_threshold >= 1, "must be >= 1"),
            ("multipart_chunksize", self.multipart_chunksize >= _S3_MIN_PART,
             f"must be >= {_S3_MIN_PART} (S3's minimum part size)"),
            ("gcs_chunk_size", self.gcs_chunk_size > 0 and self.gcs_chunk_size % _GCS_CHUNK_UNIT == 0,
             f"must be a positive multiple of {_GCS_CHUNK_UNIT}"),
            ("max_workers", self.max_workers >= 1, "must be >= 1"),
            ("timeout", self.timeout > 0, "must be > 0"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise StorageError(f"storage setting {name} {expected}, got {getattr(self, name)!r}")
        return self


def _config_from_env() -> StorageConfig:
    """Defaults, overridden by TLT_STORAGE_RETRY_ATTEMPTS / _RETRY_BASE_DELAY / TLT_S3_ENDPOINT_URL."""
    fields: dict[str, Any] = {}
    env = os.environ
    try:
        if env.get("TLT_STORAGE_RETRY_ATTEMPTS"):
            fields["retry_attempts"] = int(env["TLT_STORAGE_RETRY_ATTEMPTS"])
        if env.get("TLT_STORAGE_RETRY_BASE_DELAY"):
            fields["retry_base_delay"] = float(env["TLT_STORAGE_RETRY_BASE_DELAY"])
    except ValueError as exc:
        raise StorageError(f"TLT_STORAGE_RETRY_* environment variable is not a number: {exc}") from None
    if env.get("TLT_S3_ENDPOINT_URL"):
        fields["s3_endpoint_url"] = env["TLT_S3_ENDPOINT_URL"]
    return StorageConfig(**fields).validate()


_config_lock = threading.Lock()
_config: StorageConfig | None = None


def get_config() -> StorageConfig:
    """The settings in effect (read from the environment on first use)."""
    global _config
    with _config_lock:
        if _config is None:
            _config = _config_from_env()
        return _config


def configure(**changes: Any) -> StorageConfig:
    """Change storage settings for this process (see `StorageConfig` for the names).

    Cached clients are dropped so endpoint and transfer settings take effect at once.

    Returns:
        The settings now in effect.

    Raises:
        StorageError: an unknown setting name or an out-of-range value.
    """
    global _config
    known = {f.name for f in dataclasses.fields(StorageConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise StorageError(f"unknown storage setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    new = dataclasses.replace(get_config(), **changes).validate()
    with _config_lock:
        _config = new
    reset_clients()
    return new


def reset_config() -> None:
    """Forget `configure` changes; the next use reads the environment again."""
    global _config
    with _config_lock:
        _config = None
    reset_clients()


# --- client cache ---------------------------------------------------------------------------

_clients_lock = threading.Lock()
_clients: dict[tuple[str, int], Any] = {}


def cached_client(name: str, factory: Callable[[], Any]) -> Any:
    """Return this process's client called ``name``, creating it with ``factory`` on first use.

    Keyed by process id too: a forked worker must not reuse its parent's connection pools.
    """
    key = (name, os.getpid())
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = factory()
            _clients[key] = client
        return client


def reset_clients() -> None:
    """Drop cached clients (after changing endpoints or credentials in the environment)."""
    with _clients_lock:
        _clients.clear()


# --- secret scrubbing -----------------------------------------------------------------------

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_MIN_SECRET_LEN = 6
# Environment variables whose values are secrets (values are scrubbed wherever they appear).
_SECRET_ENV = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|ACCESS_KEY|PRIVATE_KEY|API_KEY|SIGNATURE")
_SECRET_ENV_EXCLUDE = re.compile(r"(_FILE|_PATH|_DIR)$")

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys (service-account JSON embeds one).
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
     "***"),
    # Authorization headers: whatever follows, up to the end of the quoted value or line.
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n]+"), r"\1***"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    # Signed-URL query parameters (S3 presigned, GCS V2/V4 signed URLs, OAuth tokens).
    (re.compile(r"(?i)\b(X-Amz-(?:Signature|Credential|Security-Token)|X-Goog-(?:Signature|Credential)"
                r"|Signature|AWSAccessKeyId|GoogleAccessId|access_token|sig|token)=[^&\s'\"<>]+"),
     r"\1=***"),
    # key = value / "key": "value" pairs with secret-looking names.
    (re.compile(r"(?i)\b((?:aws_)?(?:secret_access_key|secret_key|session_token|security_token"
                r"|access_key_id|client_secret|private_key|password|passwd|api_key|secret)"
                r"['\"]?\s*[:=]\s*['\"]?)[^\s'\",&;]+"),
     r"\1***"),
    # AWS access key ids and Google OAuth access tokens, wherever they stand.
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{12,}\b"), "***"),
    (re.compile(r"\bya29\.[0-9A-Za-z_.-]+"), "***"),
    # user:password@ in URLs.
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1***@"),
]


def register_secret(*values: str | None) -> None:
    """Remember credential values (e.g. resolved from a profile) so `scrub` removes them."""
    with _secrets_lock:
        _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_LEN)


def scrub(text: str) -> str:
    """Remove credentials from ``text``: known secret values, keys, tokens and URL signatures."""
    values = {v for k, v in os.environ.items()
              if _SECRET_ENV.search(k.upper()) and not _SECRET_ENV_EXCLUDE.search(k.upper())
              and len(v) >= _MIN_SECRET_LEN}
    with _secrets_lock:
        values |= _secrets
    # Longest first, so a secret containing another is removed whole.
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def storage_error(uri: str, message: str) -> StorageError:
    """A StorageError reading "<uri>: <message>" on one line, with credentials scrubbed."""
    one_line = " ".join(f"{uri}: {message}".split())
    return StorageError(scrub(one_line))


# --- retries --------------------------------------------------------------------------------


def with_retries(uri: str, what: str, fn: Callable[[], T],
                 classify: Callable[[BaseException], tuple[str, str]]) -> T:
    """Call ``fn``, retrying transient failures with exponential backoff and jitter.

    Args:
        uri: the URI named in errors and log lines.
        what: the operation ("read", "write", "list" ...), named in errors.
        fn: the call to make; it must be safe to repeat.
        classify: maps an exception to (TRANSIENT | KNOWN | OTHER, detail).

    Raises:
        StorageError: "<uri>: <detail>" for KNOWN conditions, "<uri>: <what> failed: <detail>"
            otherwise, or "<uri>: <what> failed after N attempts: <detail>" once retries run out.
    """
    cfg = get_config()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is classified and re-raised
            kind, detail = classify(exc)
            if kind == KNOWN:
                raise storage_error(uri, detail) from None
            if kind != TRANSIENT:
                raise storage_error(uri, f"{what} failed: {detail}") from None
            if attempt >= cfg.retry_attempts:
                raise storage_error(
                    uri, f"{what} failed after {attempt} attempt{'s' if attempt > 1 else ''}: {detail}"
                ) from None
            # Full jitter on the upper half keeps many workers from retrying in lockstep.
            delay = min(cfg.retry_max_delay, cfg.retry_base_delay * 2 ** (attempt - 1))
            delay *= 0.5 + random.random() / 2
            log.warning("%s", scrub(f"{uri}: {what} attempt {attempt}/{cfg.retry_attempts} failed "
                                    f"({detail}); retrying in {delay:.2f}s"))
            time.sleep(delay)


def run_parallel(fn: Callable[[T], Any], items: Iterable[T], *, desc: str) -> list[Any]:
    """Apply ``fn`` to every item on a thread pool, with a progress bar on a terminal.

    The first exception is re-raised after the pool has finished the items it started.
    """
    items = list(items)
    if not items:
        return []
    workers = min(get_config().max_workers, len(items))
    if workers == 1:
        return [fn(item) for item in items]
    from tqdm import tqdm  # noqa: PLC0415 - only needed for trees

    results: list[Any] = [None] * len(items)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(items), desc=desc, unit="file", disable=None, leave=False) as bar:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        try:
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results


# --- URIs -----------------------------------------------------------------------------------

_URI = re.compile(r"^(gs|s3)://([^/]*)/?(.*)$")


def parse_uri(uri: str) -> tuple[str, str, str]:
    """Split "s3://bucket/a/b" into ("s3", "bucket", "a/b").

    Raises:
        StorageError: the URI has no bucket name.
    """
    match = _URI.match(uri)
    if not match or not match.group(2):
        raise storage_error(uri, "expected gs://<bucket>/<path> or s3://<bucket>/<path>")
    return match.group(1), match.group(2), match.group(3)
