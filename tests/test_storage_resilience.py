"""tlt.io.storage under failure: retries, credential scrubbing, atomic uploads, settings.

Faults are injected at the HTTP level by a proxy between the client and the test servers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from xml.sax.saxutils import escape

import pytest
from storage_servers import FAKE_AWS_SECRET

from tlt.errors import StorageError
from tlt.io import _storage_common as common
from tlt.io import storage as st

S3_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                b"<Message>Please reduce your request rate.</Message></Error>")
GCS_BACKEND_ERROR = json.dumps({"error": {"code": 503, "message": "Backend Error", "errors": [
    {"message": "Backend Error", "reason": "backendError"}]}}).encode()


@pytest.fixture(autouse=True)
def _fresh_settings():
    st.reset_config()
    yield
    st.reset_config()


@pytest.fixture(params=["s3", "gcs"])
def flaky(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, fault_proxy) -> SimpleNamespace:
    """A fresh bucket reached through a FaultProxy, with matchers for its kinds of request.

    Faults are aimed at requests of one kind (uploads, object reads, listings) because the GCS
    client also sends bucket-metadata requests of its own in the background.
    """
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        proxy = fault_proxy(request.getfixturevalue("moto_endpoint"))
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        name = bucket[len("s3://"):]
        env = SimpleNamespace(
            body=S3_SLOW_DOWN, ctype="application/xml",
            upload=lambda m, p: m == "PUT" and p.startswith(f"/{name}/"),
            read=lambda m, p: m == "GET" and p.startswith(f"/{name}/"),
            listing=lambda m, p: m == "GET" and "list-type=2" in p)
    else:
        bucket = request.getfixturevalue("gcs_bucket")
        proxy = fault_proxy(request.getfixturevalue("gcs_endpoint"))
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        env = SimpleNamespace(
            body=GCS_BACKEND_ERROR, ctype="application/json",
            upload=lambda m, p: m in ("POST", "PUT") and p.startswith("/upload/"),
            read=lambda m, p: m == "GET" and "/o/" in p,
            listing=lambda m, p: m == "GET" and "/o?" in p)
    st.configure(retry_attempts=3, retry_base_delay=0.01)  # also drops cached clients
    env.bucket, env.proxy = bucket, proxy
    env.uploads = lambda: sum(1 for m, p in list(proxy.requests) if env.upload(m, p))
    return env


def test_transient_failures_are_retried(flaky: SimpleNamespace) -> None:
    uri = st.join(flaky.bucket, "retry", "ok.txt")
    flaky.proxy.fail(2, status=503, body=flaky.body, content_type=flaky.ctype, match=flaky.upload)
    st.write_text(uri, "made it")
    assert flaky.uploads() == 3  # two failures, then success

    flaky.proxy.fail(1, drop=True, match=flaky.read)  # connection closed without an answer
    assert st.read_text(uri) == "made it"
    flaky.proxy.fail(1, status=429, body=b"", content_type="text/plain", match=flaky.listing)
    assert st.list_files(st.join(flaky.bucket, "retry")) == [uri]
    assert sum(1 for m, p in flaky.proxy.requests if flaky.listing(m, p)) == 2


def test_retries_give_up_with_a_clear_error(flaky: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    uri = st.join(flaky.bucket, "never.txt")
    flaky.proxy.fail(1000, status=503, body=flaky.body, content_type=flaky.ctype, match=flaky.upload)
    with pytest.raises(StorageError) as err:
        st.write_bytes(uri, b"x")
    assert flaky.uploads() == 3
    reason = ("SlowDown (HTTP 503): Please reduce your request rate." if uri.startswith("s3://")
              else "HTTP 503: Backend Error")
    assert str(err.value) == f"{uri}: write failed after 3 attempts: {reason}"
    retries = [r.getMessage() for r in caplog.records if r.name == "tlt.io.storage"]
    assert len(retries) == 2
    assert retries[0].startswith(f"{uri}: write attempt 1/3 failed ({reason}); retrying in ")


def test_permanent_errors_are_not_retried(flaky: SimpleNamespace) -> None:
    uri = st.join(flaky.bucket, "forbidden.txt")
    flaky.proxy.fail(1000, status=403, body=b"", content_type="text/plain", match=flaky.upload)
    with pytest.raises(StorageError) as err:
        st.write_bytes(uri, b"x")
    assert flaky.uploads() == 1
    assert str(err.value).startswith(f"{uri}: access denied: ")


def test_unreachable_endpoint(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # discard port: refused
    st.configure(retry_attempts=2, retry_base_delay=0)
    uri = st.join(s3_bucket, "x.txt")
    with pytest.raises(StorageError) as err:
        st.read_bytes(uri)
    assert str(err.value) == (f'{uri}: read failed after 2 attempts: EndpointConnectionError: '
                              f'Could not connect to the endpoint URL: "http://127.0.0.1:9/{s3_bucket[5:]}/x.txt"')


def test_scrub_removes_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "hunter2-minio-pw")
    common.register_secret("profile-secret-value-123")
    cases = {
        "key AKIAIOSFODNN7EXAMPLE denied": "key *** denied",
        "GET https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2024"
        "&X-Amz-Signature=9f86d081884c7d65&X-Amz-Expires=60":
            "GET https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
            "&X-Amz-Signature=***&X-Amz-Expires=60",
        "https://storage.googleapis.com/b/o?GoogleAccessId=sa@p.iam&Signature=abc%2Bdef":
            "https://storage.googleapis.com/b/o?GoogleAccessId=***&Signature=***",
        "headers {'Authorization': 'Bearer ya29.a0AfH6SMB'}": "headers {'Authorization': '***'}",
        "token ya29.c.Kp8BBwhatever here": "token *** here",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG": "aws_secret_access_key = ***",
        '{"private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}':
            '{"private_key": "***\n"}',
        "connect to http://admin:s3cr3tpass@minio:9000/": "connect to http://***@minio:9000/",
        "login with hunter2-minio-pw failed": "login with *** failed",
        "profile-secret-value-123 leaked": "*** leaked",
        "s3://bucket/key: no such object": "s3://bucket/key: no such object",
    }
    for raw, clean in cases.items():
        assert common.scrub(raw) == clean, raw


def test_secrets_in_server_errors_are_scrubbed(flaky: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    uri = st.join(flaky.bucket, "secret.txt")
    leak = (f"key {FAKE_AWS_SECRET} sig https://x/o?X-Amz-Signature=0123abcd&X-Goog-Signature=fe01 "
            f"Authorization: Bearer ya29.A0ARrdaM-token")
    if uri.startswith("s3://"):
        slow = f"<Error><Code>SlowDown</Code><Message>{escape(leak)}</Message></Error>".encode()
        denied = f"<Error><Code>AccessDenied</Code><Message>{escape(leak)}</Message></Error>".encode()
    else:
        slow = json.dumps({"error": {"code": 503, "message": leak}}).encode()
        denied = json.dumps({"error": {"code": 403, "message": leak}}).encode()
    flaky.proxy.fail(2, status=503, body=slow, content_type=flaky.ctype, match=flaky.upload)
    flaky.proxy.fail(1, status=403, body=denied, content_type=flaky.ctype, match=flaky.upload)
    with pytest.raises(StorageError) as err:
        st.write_bytes(uri, b"x")
    # Only our own records: botocore logs at INFO too when another test left the root logger there.
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("tlt")]
    assert len(logged) == 2  # the two retried failures were logged...
    for secret in (FAKE_AWS_SECRET, "0123abcd", "fe01", "ya29", "A0ARrdaM"):
        assert all(secret not in line for line in [str(err.value), *logged])  # ...without secrets
    assert str(err.value).startswith(f"{uri}: access denied: ")
    assert str(err.value).endswith("key *** sig https://x/o?X-Amz-Signature=***&X-Goog-Signature=*** "
                                   "Authorization: ***")
    # The original exception (with the secret in its text) is not chained for tracebacks to print.
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_failed_s3_multipart_upload_publishes_nothing(s3_bucket: str, moto_endpoint: str, fault_proxy,
                                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import boto3

    uri = st.join(s3_bucket, "model.bin")
    st.write_bytes(uri, b"old model")
    proxy = fault_proxy(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    st.configure(retry_attempts=2, retry_base_delay=0, multipart_threshold=5 * 2**20,
                 multipart_chunksize=5 * 2**20)
    big = tmp_path / "big.bin"
    big.write_bytes(b"n" * (12 * 2**20))  # three parts
    proxy.fail(1000, status=500, body=b"<Error><Code>InternalError</Code><Message>disk on fire</Message></Error>",
               match=lambda method, path: method == "PUT" and "partNumber=2" in path)
    with pytest.raises(StorageError) as err:
        st.upload_file(big, uri)
    assert str(err.value) == f"{uri}: upload failed after 2 attempts: InternalError (HTTP 500): disk on fire"
    assert st.read_bytes(uri) == b"old model"  # the old object is untouched
    uploads = boto3.client("s3", endpoint_url=moto_endpoint).list_multipart_uploads(Bucket=s3_bucket[5:])
    assert uploads.get("Uploads", []) == []  # aborted, no orphaned parts


def test_failed_gcs_resumable_upload_publishes_nothing(gcs_bucket: str, gcs_endpoint: str, fault_proxy,
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    uri = st.join(gcs_bucket, "model.bin")
    st.write_bytes(uri, b"old model")
    proxy = fault_proxy(gcs_endpoint)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    st.configure(retry_attempts=2, retry_base_delay=0, gcs_chunk_size=4 * 2**20)
    big = tmp_path / "big.bin"
    big.write_bytes(b"n" * (9 * 2**20))  # resumable (> 8 MiB), three chunks
    # The first chunk lands, every later one fails: the upload never completes.
    proxy.fail(1000, status=503, body=GCS_BACKEND_ERROR, content_type="application/json",
               match=lambda method, path: method == "PUT" and "upload_id=" in path
               and proxy.count("PUT", "upload_id=") > 1)
    with pytest.raises(StorageError) as err:
        st.upload_file(big, uri)
    assert str(err.value).startswith(f"{uri}: upload failed after 2 attempts: HTTP 503")
    assert proxy.count("PUT", "upload_id=") == 3  # chunk 1 ok + chunk 2 failed, then chunk 1 failed
    assert st.read_bytes(uri) == b"old model"


def test_endpoint_settings(s3_bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = st.join(s3_bucket, "e.txt")
    st.write_text(uri, "endpoint")
    st.configure(retry_attempts=1)
    # An explicit endpoint wins over AWS_ENDPOINT_URL_S3.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.setenv("TLT_S3_ENDPOINT_URL", moto_endpoint)
    st.reset_config()
    assert st.read_text(uri) == "endpoint"
    monkeypatch.delenv("TLT_S3_ENDPOINT_URL")
    st.reset_config()
    st.configure(s3_endpoint_url=moto_endpoint)
    assert st.read_text(uri) == "endpoint"
    # boto3 reads the global AWS_ENDPOINT_URL by itself.
    st.reset_config()
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    st.reset_clients()
    assert st.read_text(uri) == "endpoint"


def test_settings_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StorageError) as err:
        st.configure(gcs_chunk_size=1000)
    assert str(err.value) == "storage setting gcs_chunk_size must be a positive multiple of 262144, got 1000"
    with pytest.raises(StorageError) as err:
        st.configure(retry_attempts=0)
    assert str(err.value) == "storage setting retry_attempts must be >= 1, got 0"
    with pytest.raises(StorageError) as err:
        st.configure(retries=3)
    assert str(err.value).startswith("unknown storage setting(s) retries; known: gcs_chunk_size, gcs_project,")
    monkeypatch.setenv("TLT_STORAGE_RETRY_ATTEMPTS", "7")
    monkeypatch.setenv("TLT_STORAGE_RETRY_BASE_DELAY", "0.25")
    st.reset_config()
    assert (common.get_config().retry_attempts, common.get_config().retry_base_delay) == (7, 0.25)
    assert st.configure(retry_attempts=2).retry_attempts == 2


def test_client_cache_is_thread_safe() -> None:
    created: list[object] = []

    def factory() -> object:
        time.sleep(0.05)  # widen the race window
        created.append(object())
        return created[-1]

    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(common.cached_client("test", factory)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1 and all(s is created[0] for s in seen)
    st.reset_clients()
    assert common.cached_client("test", factory) is created[1]


def test_import_is_cheap() -> None:
    import subprocess
    import sys

    code = ("import sys, tlt.io.storage; "
            "print(sorted(m for m in ('boto3', 'botocore', 'google.cloud.storage') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_create_only_write_is_retried_and_exists_is_not_an_error(flaky: SimpleNamespace) -> None:
    uri = st.join(flaky.bucket, "claims", "v1.json")
    flaky.proxy.fail(2, status=503, body=flaky.body, content_type=flaky.ctype, match=flaky.upload)
    assert st.write_new(uri, b"mine") is True
    assert flaky.uploads() == 3  # two failures, then success
    assert st.write_new(uri, b"theirs") is False  # 412: answered at once, not retried
    assert flaky.uploads() == 4
    assert st.read_bytes(uri) == b"mine"


def test_s3_conditional_conflict_is_retried(s3_bucket: str, moto_endpoint: str, fault_proxy,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 answers 409 ConditionalRequestConflict while a racing conditional write is in flight,
    and asks for a retry; the retry then gets the real answer."""
    proxy = fault_proxy(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    st.configure(retry_attempts=3, retry_base_delay=0.01)
    conflict = (b"<Error><Code>ConditionalRequestConflict</Code><Message>A conflicting "
                b"operation occurred</Message></Error>")
    proxy.fail(1, status=409, body=conflict, content_type="application/xml",
               match=lambda m, p: m == "PUT")
    assert st.write_new(st.join(s3_bucket, "claim.json"), b"x") is True
    assert sum(1 for m, _ in proxy.requests if m == "PUT") == 2
