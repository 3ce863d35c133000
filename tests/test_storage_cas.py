"""Compare-and-swap (`storage.read_with_token` / `write_if_unchanged`) on local disk, moto S3
and the GCS emulator, and the emulator's generation preconditions it relies on."""

from __future__ import annotations

import threading

import pytest

from tlt.io import storage

BACKENDS = ["local", "s3_bucket", "gcs_bucket"]


def _uri(request, backend: str, tmp_path) -> str:
    root = str(tmp_path) if backend == "local" else request.getfixturevalue(backend)
    return storage.join(root, "aliases", "production.json")


@pytest.mark.parametrize("backend", BACKENDS)
def test_swap_lands_only_from_the_state_read(request, tmp_path, backend):
    uri = _uri(request, backend, tmp_path)
    assert storage.read_with_token(uri) is None
    assert storage.write_if_unchanged(uri, b"one", None)
    assert not storage.write_if_unchanged(uri, b"other", None)  # it exists now
    data, token = storage.read_with_token(uri)
    assert data == b"one"
    assert storage.write_if_unchanged(uri, b"two", token)
    assert not storage.write_if_unchanged(uri, b"three", token)  # stale token
    data, newer = storage.read_with_token(uri)
    assert (data, newer != token) == (b"two", True)
    storage.delete(uri)
    assert not storage.write_if_unchanged(uri, b"four", newer)  # deleted meanwhile
    assert storage.read_with_token(uri) is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_swappers_from_one_token_one_wins(request, tmp_path, backend):
    uri = _uri(request, backend, tmp_path)
    storage.write_if_unchanged(uri, b"start", None)
    _, token = storage.read_with_token(uri)
    start = threading.Barrier(6, timeout=20)
    won: list[bytes] = []

    def swap(i: int) -> None:
        start.wait()
        if storage.write_if_unchanged(uri, f"writer {i}".encode(), token):
            won.append(f"writer {i}".encode())

    threads = [threading.Thread(target=swap, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1
    assert storage.read_with_token(uri)[0] == won[0]


def test_gcs_emulator_enforces_any_generation(gcs_bucket):
    """Real GCS rule, taught to the emulator: uploads and downloads with ifGenerationMatch."""
    from google.api_core.exceptions import PreconditionFailed
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    bucket = gcs.Client(project="tlt-test", credentials=AnonymousCredentials()).bucket(
        gcs_bucket[len("gs://"):])
    blob = bucket.blob("x")
    blob.upload_from_string(b"one", if_generation_match=0)
    first = bucket.get_blob("x").generation
    bucket.blob("x").upload_from_string(b"two", if_generation_match=first)
    second = bucket.get_blob("x").generation
    assert second != first
    with pytest.raises(PreconditionFailed):
        bucket.blob("x").upload_from_string(b"three", if_generation_match=first)
    with pytest.raises(PreconditionFailed):
        bucket.blob("x").download_as_bytes(if_generation_match=first)
    assert bucket.blob("x").download_as_bytes(if_generation_match=second) == b"two"
