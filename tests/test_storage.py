"""tlt.io.storage on local paths, S3 (moto server) and GCS (emulator), over real HTTP."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from pathlib import Path

import pytest

from tlt.errors import StorageError
from tlt.io import storage as st

BACKENDS = ["local", "s3", "gcs"]


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Each test starts from, and leaves behind, the default storage settings."""
    st.reset_config()
    yield
    st.reset_config()


@pytest.fixture(params=BACKENDS)
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty folder on each backend: a local folder or a prefix in a fresh bucket."""
    if request.param == "local":
        return str(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket" if request.param == "s3" else "gcs_bucket")
    return st.join(bucket, "data")


def _make_tree(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def _read_tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


TREE = {
    "metadata.json": b'{"stage": "train"}',
    "weights/model.bin": bytes(range(256)) * 3,
    "weights/deep/er.txt": "größe\n".encode(),
    "notes.txt": b"",
}


def test_is_remote_and_join() -> None:
    assert st.is_remote("s3://b/k") and st.is_remote("gs://b") and not st.is_remote("/tmp/x")
    assert not st.is_remote(Path("s3:/x")) and not st.is_remote("file:///tmp/x")
    assert st.join("s3://b", "x", "y.txt") == "s3://b/x/y.txt"
    assert st.join("gs://b/run/", "/out/", "m.tlt") == "gs://b/run/out/m.tlt"
    assert st.join("s3://b/p") == "s3://b/p"
    assert st.join("/data/run", "/out", "m.tlt") == "/data/run/out/m.tlt"
    assert st.join(Path("rel"), "a") == os.path.join("rel", "a")


def test_round_trip(root: str) -> None:
    text_uri = st.join(root, "dir", "hello.txt")
    bin_uri = st.join(root, "top.bin")
    st.write_text(text_uri, "héllo\n")
    st.write_bytes(bin_uri, b"\x00\x01\xff")
    assert st.read_text(text_uri) == "héllo\n"
    assert st.read_bytes(text_uri) == "héllo\n".encode()
    assert st.read_bytes(bin_uri) == b"\x00\x01\xff"

    st.write_text(text_uri, "replaced")  # overwrite
    assert st.read_text(text_uri) == "replaced"

    assert st.exists(text_uri) and st.exists(st.join(root, "dir")) and st.exists(root)
    assert st.isdir(st.join(root, "dir")) and st.isdir(root)
    assert not st.isdir(text_uri)
    assert not st.exists(st.join(root, "nothing.txt")) and not st.isdir(st.join(root, "nothing"))
    # "dir" must not match "dir2/..." nor "di" match "dir/...": prefixes end at a folder boundary.
    st.write_text(st.join(root, "dir2", "x.txt"), "x")
    assert not st.exists(st.join(root, "di"))

    assert st.list_files(root) == sorted([bin_uri, text_uri, st.join(root, "dir2", "x.txt")])
    assert st.list_files(root, recursive=False) == [bin_uri]
    assert st.list_files(st.join(root, "dir")) == [text_uri]
    assert st.list_files(text_uri) == [text_uri]
    assert st.list_files(st.join(root, "nothing")) == []

    st.delete(text_uri)
    assert not st.exists(text_uri)
    st.delete(text_uri)  # deleting what is gone is not an error
    st.delete_tree(st.join(root, "dir2"))
    assert st.list_files(root) == [bin_uri]
    st.delete_tree(st.join(root, "dir2"))


def test_tree_round_trip_and_staging(root: str, tmp_path: Path) -> None:
    src = _make_tree(tmp_path / "src", TREE)
    tree_uri = st.join(root, "artifact")
    written = st.upload_tree(src, tree_uri)
    assert written == sorted(st.join(tree_uri, rel) for rel in TREE)
    assert st.list_files(tree_uri) == written

    out = st.download_tree(tree_uri, tmp_path / "down")
    assert out == tmp_path / "down" and _read_tree(out) == TREE

    with st.staged_input(tree_uri) as local:
        assert local.is_dir() and _read_tree(local) == TREE
        if not st.is_remote(root):
            assert local == Path(tree_uri)  # local inputs are used in place
    if st.is_remote(root):
        assert not local.exists()  # the temporary copy is removed
    with st.staged_input(st.join(tree_uri, "weights", "model.bin")) as local_file:
        assert local_file.name == "model.bin" and local_file.read_bytes() == TREE["weights/model.bin"]

    # staged_output publishes the folder and replaces what an earlier run left there.
    with st.staged_output(tree_uri) as out_dir:
        (out_dir / "metadata.json").write_text('{"stage": "prune"}')
        (out_dir / "pruned.bin").write_bytes(b"p" * 10)
    assert st.list_files(tree_uri) == [st.join(tree_uri, "metadata.json"), st.join(tree_uri, "pruned.bin")]
    assert st.read_text(st.join(tree_uri, "metadata.json")) == '{"stage": "prune"}'


def test_copy_across_backends(s3_bucket: str, gcs_bucket: str, tmp_path: Path) -> None:
    roots = {"local": str(tmp_path / "l"), "s3": s3_bucket, "gcs": gcs_bucket}
    payload = b"copy me " * 100
    for name, base in roots.items():
        st.write_bytes(st.join(base, "src", f"{name}.bin"), payload + name.encode())
    for src_name, src_base in roots.items():
        for dst_name, dst_base in roots.items():
            src = st.join(src_base, "src", f"{src_name}.bin")
            dst = st.join(dst_base, "dst", f"from-{src_name}.bin")
            st.copy(src, dst)
            assert st.read_bytes(dst) == payload + src_name.encode(), (src, dst)
    with pytest.raises(StorageError) as err:
        st.copy(st.join(s3_bucket, "src", "s3.bin"), "s3://tlt-no-such-bucket-x1/dst.bin")
    assert str(err.value) == "s3://tlt-no-such-bucket-x1/dst.bin: bucket does not exist"


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_upload_is_multipart(backend: str, request: pytest.FixtureRequest, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    data = os.urandom(20 * 1024 * 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    base = str(tmp_path / "store") if backend == "local" else request.getfixturevalue(
        "s3_bucket" if backend == "s3" else "gcs_bucket")
    uri = st.join(base, "models", "big.bin")
    caplog.set_level(logging.INFO, logger="gcp_storage_emulator.server")

    st.upload_file(big, uri)

    if backend == "s3":
        import boto3  # the fixture's environment points boto3 at the moto server

        bucket, key = uri[len("s3://"):].split("/", 1)
        etag = boto3.client("s3").head_object(Bucket=bucket, Key=key)["ETag"]
        assert etag.strip('"').endswith("-3")  # 20 MiB in 8 MiB parts
    elif backend == "gcs":
        chunks = [r.getMessage() for r in caplog.records
                  if r.name == "gcp_storage_emulator.server" and '"PUT ' in r.getMessage()
                  and "upload_id=" in r.getMessage()]
        assert len(chunks) == 3  # a resumable upload in 8 MiB chunks
    st.download_file(uri, tmp_path / "back.bin")
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    assert st.read_bytes(uri) == data


def test_listing_1000_objects(root: str, tmp_path: Path, seed_objects) -> None:
    files = {f"f{i:04d}.txt": b"t" for i in range(600)}
    files.update({f"sub/s{i:03d}.txt": b"s" for i in range(100)})
    files.update({f"sub/deep/d{i:03d}.txt": b"d" for i in range(300)})
    tree = st.join(root, "many")
    if st.is_remote(root):
        # One request per object would take most of the time budget: seed the server directly.
        bucket, prefix = root.split("://", 1)[1].split("/", 1)
        seed_objects(root.split("://")[0] + "://" + bucket, {f"{prefix}/many/{k}": v for k, v in files.items()})
    else:
        _make_tree(Path(tree), files)

    everything = st.list_files(tree)
    assert len(everything) == 1000
    assert everything == sorted(st.join(tree, rel) for rel in files)
    top = st.list_files(tree, recursive=False)
    assert top == [st.join(tree, f"f{i:04d}.txt") for i in range(600)]
    assert st.list_files(st.join(tree, "sub"), recursive=False) == [
        st.join(tree, "sub", f"s{i:03d}.txt") for i in range(100)]
    assert len(st.list_files(st.join(tree, "sub"))) == 400


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_missing_object_and_bucket_errors(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    bucket = request.getfixturevalue("s3_bucket" if backend == "s3" else "gcs_bucket")
    scheme = bucket.split("://")[0]
    missing = st.join(bucket, "missing.txt")
    nope = f"{scheme}://nope-bucket-{os.getpid()}"

    cases = [
        (lambda: st.read_bytes(missing), f"{missing}: no such object"),
        (lambda: st.download_file(missing, tmp_path / "m"), f"{missing}: no such object"),
        (lambda: st.copy(missing, st.join(bucket, "c.txt")), f"{missing}: no such object"),
        (lambda: st.staged_input(st.join(bucket, "none")).__enter__(),
         f"{bucket}/none: no objects under this prefix"),
        (lambda: st.read_bytes(f"{nope}/x"), f"{nope}/x: bucket does not exist"),
        (lambda: st.write_bytes(f"{nope}/x", b"1"), f"{nope}/x: bucket does not exist"),
        (lambda: st.exists(f"{nope}/x"), f"{nope}/x: bucket does not exist"),
        (lambda: st.list_files(f"{nope}/p"), f"{nope}/p: bucket does not exist"),
        (lambda: st.download_file(f"{nope}/x", tmp_path / "m"), f"{nope}/x: bucket does not exist"),
        (lambda: st.check_writable_prefix(f"{nope}/out"), f"{nope}/out: bucket does not exist"),
        (lambda: st.read_bytes(bucket + "/dir/"), f"{bucket}/dir/: names a bucket or folder, not an object"),
        (lambda: st.delete_tree(bucket), f"{bucket}: refusing to delete a whole bucket; name a folder under it"),
        (lambda: st.read_bytes(f"{scheme}:///x"),
         f"{scheme}:///x: expected gs://<bucket>/<path> or s3://<bucket>/<path>"),
    ]
    for call, message in cases:
        with pytest.raises(StorageError) as err:
            call()
        assert str(err.value) == message
    assert not (tmp_path / "m").exists()  # failed downloads leave nothing behind


def test_local_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    for call in (lambda: st.read_bytes(missing), lambda: st.staged_input(str(missing)).__enter__(),
                 lambda: st.download_tree(str(missing), tmp_path / "d"),
                 lambda: st.upload_file(missing, tmp_path / "x")):
        with pytest.raises(StorageError) as err:
            call()
        assert str(err.value) == f"{missing}: no such file or folder"
    with pytest.raises(StorageError) as err:
        st.read_bytes(tmp_path)
    assert str(err.value) == f"{tmp_path}: is a folder, not a file"
    st.write_bytes(tmp_path / "bad.txt", b"\xff\xfe")
    with pytest.raises(StorageError) as err:
        st.read_text(tmp_path / "bad.txt")
    assert str(err.value) == f"{tmp_path / 'bad.txt'}: not valid utf-8 text (invalid start byte at byte 0)"


def test_check_writable_prefix(root: str) -> None:
    out = st.join(root, "out")
    st.check_writable_prefix(out)
    assert st.list_files(root) == []  # the probe is gone
    if not st.is_remote(root):
        assert os.path.isdir(out)


@pytest.mark.parametrize("with_old", [False, True])
def test_failing_staged_output_publishes_nothing(root: str, with_old: bool) -> None:
    out = st.join(root, "artifact")
    if with_old:
        st.write_text(st.join(out, "metadata.json"), "old")
    with pytest.raises(RuntimeError, match="stage crashed"):
        with st.staged_output(out) as tmp:
            (tmp / "metadata.json").write_text("new")
            (tmp / "weights.bin").write_bytes(b"half")
            raise RuntimeError("stage crashed")
    assert not tmp.exists()
    if with_old:
        assert st.list_files(out) == [st.join(out, "metadata.json")]
        assert st.read_text(st.join(out, "metadata.json")) == "old"
    else:
        assert not st.exists(out) and st.list_files(root) == []


def test_failed_local_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "spec.txt"
    st.write_text(target, "old content")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StorageError) as err:
        st.write_bytes(target, b"new content that never lands")
    assert str(err.value) == f"{target}: no space left on device"
    assert target.read_text() == "old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.txt"]  # no temporary left over


def test_download_tree_rejects_names_escaping_the_folder(s3_bucket: str, tmp_path: Path) -> None:
    st.write_bytes(st.join(s3_bucket, "art", "ok.txt"), b"ok")
    st.write_bytes(s3_bucket + "/art/../../evil.txt", b"evil")
    with pytest.raises(StorageError) as err:
        st.download_tree(st.join(s3_bucket, "art"), tmp_path / "dest")
    assert str(err.value) == (f"{s3_bucket}/art/../../evil.txt: object name escapes the destination "
                              f"folder {tmp_path / 'dest'}")
    assert not (tmp_path / "evil.txt").exists()


def test_write_new_is_create_only(root: str) -> None:
    uri = st.join(root, "entries", "v1.json")
    assert st.write_new(uri, b"first") is True
    assert st.write_new(uri, b"second") is False
    assert st.read_bytes(uri) == b"first"
    assert st.list_files(root) == [uri]  # no temporary left beside it (local: link + unlink)
    st.write_bytes(uri, b"replaced")  # a plain write still replaces it
    assert st.read_bytes(uri) == b"replaced"


def test_write_new_racing_threads_one_wins(root: str) -> None:
    import concurrent.futures

    uri = st.join(root, "claim.json")
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        won = list(pool.map(lambda i: st.write_new(uri, f"writer {i}".encode()), range(4)))
    assert won.count(True) == 1
    assert st.read_bytes(uri) == f"writer {won.index(True)}".encode()


def test_list_times(root: str) -> None:
    import time

    before = time.time() - 5
    st.write_bytes(st.join(root, "a", "x.bin"), b"1")
    st.write_bytes(st.join(root, "a", "deep", "y.bin"), b"2")
    times = st.list_times(st.join(root, "a"))
    assert sorted(times) == [st.join(root, "a", "deep", "y.bin"), st.join(root, "a", "x.bin")]
    assert all(before <= t <= time.time() + 5 for t in times.values())
    assert st.list_times(st.join(root, "absent")) == {}


def test_s3_delete_tree_aborts_unfinished_multipart_uploads(s3_bucket: str, moto_endpoint: str) -> None:
    """The parts of a writer killed mid-upload are invisible but kept (and billed) until aborted."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = s3_bucket[len("s3://"):]
    for key in ("run/killed/model.tlt", "other/busy.bin"):
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1,
                           Body=b"x" * 1024)
    st.write_bytes(st.join(s3_bucket, "run", "killed", "done.txt"), b"1")
    st.delete_tree(st.join(s3_bucket, "run"))
    pending = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in pending] == ["other/busy.bin"]  # only the one outside the tree
    assert st.list_files(st.join(s3_bucket, "run")) == []


def test_local_write_new_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    uri = tmp_path / "claims" / "v1.json"
    assert st.write_new(uri, b"first") is True
    assert st.write_new(uri, b"second") is False
    assert uri.read_bytes() == b"first"
    assert [p.name for p in uri.parent.iterdir()] == ["v1.json"]
