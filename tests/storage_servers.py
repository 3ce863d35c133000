"""pytest plugin: real S3 and GCS servers on 127.0.0.1 for storage tests (loaded by conftest.py).

Fixtures:
    moto_endpoint (session): URL of a moto S3 server (ThreadedMotoServer).
    gcs_endpoint (session): URL of a gcp-storage-emulator server, in memory.
    s3_bucket: "s3://<fresh bucket>"; AWS_ENDPOINT_URL_S3 and fake credentials set for the test.
    gcs_bucket: "gs://<fresh bucket>"; STORAGE_EMULATOR_HOST set for the test.
    fault_proxy: factory ``fault_proxy(upstream_url) -> FaultProxy``, an HTTP proxy that answers
        chosen requests with errors or dropped connections (to test retries), closed at teardown.
    seed_objects: ``seed_objects(bucket_uri, {key: bytes})`` puts many objects straight into a
        server's memory (bulk set-up for listing tests; the code under test still uses HTTP).

The GCS emulator ignores generation preconditions, which real GCS enforces and which the model
registry relies on (create-only commits of versions, compare-and-swap of aliases);
`_enforce_generation_match` teaches its object insert and download the real GCS rule:
``ifGenerationMatch`` must equal the object's current generation, 0 meaning "must not exist"
(else HTTP 412 conditionNotMet), checked and written under one lock. Likewise moto's S3 server
checks ``If-Match`` / ``If-None-Match`` and then writes without a lock, so two conditional puts
in flight at once could both pass; `_atomic_moto_puts` makes check and write one step, as on
real S3.

Both bucket fixtures reset `tlt.io.storage`'s cached clients and settings before and after the
test, so clients never outlive the environment they were built from.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import threading
import uuid
from typing import Callable, Iterator
from urllib.parse import urlsplit

import pytest

__all__ = ["FaultProxy", "seed_objects"]

FAKE_AWS_KEY_ID = "testing-access-key-id"
FAKE_AWS_SECRET = "testing-secret-access-key"
GCS_TEST_PROJECT = "tlt-test"

# The running servers, for `seed_objects`.
_SERVERS: dict[str, object] = {}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on an ephemeral port; its base URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    restore = _atomic_moto_puts()
    server.start()
    try:
        host, port = server.get_host_and_port()
        _SERVERS["s3"] = server
        yield f"http://{host}:{port}"
    finally:
        _SERVERS.pop("s3", None)
        server.stop()
        restore()


def _atomic_moto_puts() -> Callable[[], None]:
    """Make moto's PutObject check its preconditions and write under one lock; returns the undo."""
    from moto.s3.responses import S3Response

    original = S3Response.put_object
    lock = threading.Lock()

    def put_object(self, *args, **kwargs):
        with lock:
            return original(self, *args, **kwargs)

    S3Response.put_object = put_object

    def restore() -> None:
        S3Response.put_object = original

    return restore


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """A gcp-storage-emulator server (in memory) on an ephemeral port; its base URL."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True)
    restore = _enforce_generation_match()
    server.start()
    try:
        # create_server has no accessor for the bound port: read it off the HTTP server.
        host, port = server._api._httpd.server_address[:2]
        _SERVERS["gs"] = server
        yield f"http://{host}:{port}"
    finally:
        _SERVERS.pop("gs", None)
        server.stop()
        restore()


def _enforce_generation_match() -> Callable[[], None]:
    """Make the emulator's object insert and download honour ``ifGenerationMatch``.

    Any generation is enforced, as real GCS does: 0 means "no live object", any other number
    must be the live object's generation (the emulator gives every write a new one).

    Returns:
        The undo.
    """
    from gcp_storage_emulator import server as emulator
    from gcp_storage_emulator.handlers import objects

    lock = threading.Lock()
    originals = {"insert": objects.insert, "download": objects.download}

    def insert(request, response, storage, *args, **kwargs):
        with lock:  # the check and the write are one step
            if _precondition_holds(request, response, storage, _object_name(request)):
                return originals["insert"](request, response, storage, *args, **kwargs)
            return None

    def download(request, response, storage, *args, **kwargs):
        with lock:
            if _precondition_holds(request, response, storage, request.params["object_id"]):
                return originals["download"](request, response, storage, *args, **kwargs)
            return None

    def _object_name(request) -> str | None:
        if request.query.get("name"):
            return request.query["name"][0]
        data = request.data if isinstance(request.data, dict) else {}
        return (data.get("meta") or data).get("name")  # multipart body, or resumable metadata

    patched = {"insert": insert, "download": download}

    def swap(to: dict) -> None:
        for attr, fn in to.items():
            setattr(objects, attr, fn)  # objects.get calls the module's download
            for _regex, handlers in emulator.HANDLERS:
                for method, handler in list(handlers.items()):
                    if handler in (originals[attr], patched[attr]):
                        handlers[method] = fn

    swap(patched)
    return lambda: swap(originals)


def _precondition_holds(request, response, storage, name: str | None) -> bool:
    """True unless ``ifGenerationMatch`` is given and differs (then the answer is a 412)."""
    from http import HTTPStatus

    from gcp_storage_emulator.exceptions import NotFound

    wanted = request.query.get("ifGenerationMatch")
    if not wanted:
        return True
    try:
        current = str(storage.get_file_obj(request.params["bucket_name"], name)["generation"])
    except NotFound:
        current = "0"
    if current == wanted[0]:
        return True
    response.status = HTTPStatus.PRECONDITION_FAILED
    response.json({"error": {"code": 412, "message": "At least one of the pre-conditions you "
                   "specified did not hold.", "errors": [
                       {"reason": "conditionNotMet", "domain": "global",
                        "message": "Precondition Failed"}]}})
    return False


def _reset_storage() -> None:
    from tlt.io import storage

    storage.reset_config()
    storage.reset_clients()


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty bucket on the moto server, as "s3://<name>"."""
    import boto3

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "TLT_S3_ENDPOINT_URL", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_AWS_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Keep the developer's ~/.aws and the instance metadata service out of the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _reset_storage()
    name = f"tlt-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    try:
        yield f"s3://{name}"
    finally:
        _reset_storage()
        _drop_bucket("s3", name)


@pytest.fixture
def gcs_bucket(gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty bucket on the GCS emulator, as "gs://<name>"."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", GCS_TEST_PROJECT)
    _reset_storage()
    name = f"tlt-{uuid.uuid4().hex[:16]}"
    gcs.Client(project=GCS_TEST_PROJECT, credentials=AnonymousCredentials()).create_bucket(name)
    try:
        yield f"gs://{name}"
    finally:
        _reset_storage()
        _drop_bucket("gs", name)


def seed_objects(bucket_uri: str, objects: dict[str, bytes]) -> None:
    """Store ``objects`` ({key: content}) in a test bucket without going through HTTP.

    Creating 1,000 objects one request at a time takes tens of seconds on a busy 2-core
    machine; this writes them into the in-process server's memory in well under a second.
    """
    scheme, rest = bucket_uri.split("://", 1)
    bucket = rest.strip("/")
    if scheme not in _SERVERS:
        raise RuntimeError(f"{bucket_uri}: no {scheme} test server is running")
    if scheme == "s3":
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key, data in objects.items():
            backend.put_object(bucket, key, data)
    else:
        from gcp_storage_emulator.handlers.objects import _checksums, _make_object_resource

        server = _SERVERS["gs"]
        host, port = server._api._httpd.server_address[:2]
        store = server._storage
        if bucket not in store.buckets:
            raise RuntimeError(f"{bucket_uri}: no such bucket on the GCS emulator")
        bucket_objects = store.objects.setdefault(bucket, {})
        for key, data in objects.items():
            resource = _make_object_resource(f"http://{host}:{port}", bucket, key,
                                             "application/octet-stream", str(len(data)))
            store._store.write_bytes(store._object_path(bucket, key), data)
            bucket_objects[key] = _checksums(data, resource)
        # create_file would re-serialise the emulator's whole index once per object.
        store._write_config_to_file()


def _drop_bucket(scheme: str, bucket: str) -> None:
    """Forget a test bucket and its objects in the server's memory.

    Keeps the servers small across a session: the GCS emulator re-serialises its whole object
    index on every write, so leftovers from earlier tests would slow every later one down.
    """
    if scheme == "s3":
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        found = backend.buckets.get(bucket)
        if found is None:
            return
        for key in list(found.keys.values()):
            if hasattr(key, "dispose"):
                key.dispose()
        for upload in list(found.multiparts.values()):
            upload.dispose()
        found.keys.clear()
        found.multiparts.clear()
        backend.delete_bucket(bucket)
    elif "gs" in _SERVERS:
        store = _SERVERS["gs"]._storage
        store.objects.pop(bucket, None)
        store.buckets.pop(bucket, None)
        for upload_id in [i for i, o in store.resumable.items() if o.get("bucket") == bucket]:
            store.resumable.pop(upload_id)
        with contextlib.suppress(FileNotFoundError):  # a bucket that never held an object
            store._store.remove_tree(bucket)
        store._write_config_to_file()


@pytest.fixture(name="seed_objects")
def seed_objects_fixture() -> Callable[[str, dict[str, bytes]], None]:
    """`seed_objects` as a fixture."""
    return seed_objects


# --- fault injection ------------------------------------------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"}


class FaultProxy:
    """A forwarding HTTP proxy on 127.0.0.1 that can fail chosen requests.

    ``fail(times, ...)`` arms a fault for the next ``times`` matching requests: either an HTTP
    answer (status, body, content type) or, with ``drop=True``, a connection closed without
    any answer. Other requests are forwarded to the upstream server unchanged. ``requests``
    records (method, path) of every request received.
    """

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port)
        self._lock = threading.RLock()  # `match` callbacks may call count()
        self._faults: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"

    def fail(self, times: int, *, status: int = 503, body: bytes = b"",
             content_type: str = "application/xml", drop: bool = False,
             match: Callable[[str, str], bool] | None = None) -> None:
        """Answer the next ``times`` requests that ``match(method, path)`` with a fault."""
        with self._lock:
            self._faults.append({"left": times, "status": status, "body": body, "drop": drop,
                                 "content_type": content_type, "match": match})

    def count(self, method: str | None = None, contains: str = "") -> int:
        """Number of requests received with this method whose path contains ``contains``."""
        with self._lock:
            return sum(1 for m, p in self.requests if (method is None or m == method) and contains in p)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take_fault(self, method: str, path: str) -> dict | None:
        with self._lock:
            self.requests.append((method, path))
            for fault in self._faults:
                if fault["left"] > 0 and (fault["match"] is None or fault["match"](method, path)):
                    fault["left"] -= 1
                    return fault
        return None

    def _handler_class(self) -> type:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # quiet: the tests read proxy.requests instead

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._take_fault(self.command, self.path)
                if fault is not None and fault["drop"]:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault is not None:
                    self.send_response(fault["status"])
                    self.send_header("Content-Type", fault["content_type"])
                    self.send_header("Content-Length", str(len(fault["body"])))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(fault["body"])
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if self.headers.get("Transfer-Encoding"):
                    headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                if self.command == "HEAD":
                    length = answer.getheader("Content-Length")
                    if length is not None:
                        self.send_header("Content-Length", length)
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        return Handler


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str], FaultProxy]]:
    """Factory of FaultProxy instances in front of a given upstream URL."""
    proxies: list[FaultProxy] = []

    def make(upstream: str) -> FaultProxy:
        proxy = FaultProxy(upstream)
        proxies.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in proxies:
            proxy.close()
