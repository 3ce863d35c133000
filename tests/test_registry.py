"""Model registry: publish, list, pull with checksum verification, errors, concurrency."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from tlt.errors import RegistryError
from tlt.io import registry as registry_mod
from tlt.io import storage
from tlt.io.modelfile import save_model_file
from tlt.io.registry import Registry


def _model_dir(tmp_path, name="src", weights=b"weights-v1"):
    src = tmp_path / name
    (src / "sub").mkdir(parents=True, exist_ok=True)
    (src / "model.tlt").write_bytes(weights)
    (src / "sub" / "labels.txt").write_text("car\nperson\n")
    return src


def test_publish_list_pull_round_trip(tmp_path):
    reg = Registry(tmp_path / "reg")
    info = reg.publish("resnet18_cls", 1, _model_dir(tmp_path), task="classification",
                       description="demo", metadata={"arch": "resnet18"})
    assert info.version == "1" and info.location.startswith("resnet18_cls/1-")
    assert [(f.path, f.size) for f in info.files] == [("model.tlt", 10), ("sub/labels.txt", 11)]
    assert info.files[0].sha256 == hashlib.sha256(b"weights-v1").hexdigest()
    assert info.size == 21

    [model] = reg.list_models()
    assert (model.name, model.application, model.framework, model.precision) == (
        "resnet18_cls", "Classification", "TLT", "FP32")
    assert model.description == "demo" and model.latest_version == "1"
    assert model.last_modified == info.created
    [v] = reg.list_versions("resnet18_cls")
    assert v == info and v.metadata == {"arch": "resnet18"}

    dest = tmp_path / "out"
    paths = reg.pull("resnet18_cls", "1", dest, progress=True)
    assert paths == [dest / "model.tlt", dest / "sub" / "labels.txt"]
    assert paths[0].read_bytes() == b"weights-v1"
    assert paths[1].read_text() == "car\nperson\n"
    assert sorted(p.name for p in dest.rglob("*")) == ["labels.txt", "model.tlt", "sub"]


def test_index_layout_and_files_on_disk(tmp_path):
    root = tmp_path / "reg"
    Registry(root).publish("m", "2", [_model_dir(tmp_path) / "model.tlt"])
    index = json.loads((root / "index.json").read_text())
    assert index["format"] == "tlt-model-registry" and index["format_version"] == 1
    entry = index["models"]["m"]["versions"]["2"]
    assert entry["files"] == [{"path": "model.tlt", "size": 10,
                               "sha256": hashlib.sha256(b"weights-v1").hexdigest()}]
    assert entry["location"].startswith("m/2-") and entry["size"] == 10
    assert (root / entry["location"] / "model.tlt").read_bytes() == b"weights-v1"
    # The commit record: one entry object per version, the same entry as the index cache's.
    record = json.loads((root / "_versions" / "m" / "2.json").read_text())
    assert (record["name"], record["version"], record["entry"]) == ("m", "2", entry)
    assert sorted(p.name for p in root.iterdir()) == ["_pending", "_versions", "index.json", "m"]
    assert list((root / "_pending").rglob("*.json")) == []  # the lease is gone


def test_publish_list_of_files_and_folders_keeps_names(tmp_path):
    src = _model_dir(tmp_path)
    extra = tmp_path / "notes.md"
    extra.write_text("hi")
    info = Registry(tmp_path / "reg").publish("m", "1", [extra, src])
    assert [f.path for f in info.files] == ["notes.md", "src/model.tlt", "src/sub/labels.txt"]
    with pytest.raises(RegistryError, match="two files would both be stored as 'notes.md'"):
        Registry(tmp_path / "reg").publish("m", "2", [extra, extra])


def test_latest_version_is_natural_order(tmp_path):
    reg = Registry(tmp_path / "reg")
    src = _model_dir(tmp_path)
    for v in ("2", "10", "9", "1.10", "1.9"):
        reg.publish("m", v, src)
    assert reg.latest_version("m") == "10"
    assert [v.version for v in reg.list_versions("m")] == ["1.9", "1.10", "2", "9", "10"]


def test_existing_version_needs_overwrite(tmp_path):
    root = tmp_path / "reg"
    reg = Registry(root)
    first = reg.publish("m", "1", _model_dir(tmp_path, "a", b"old"))
    with pytest.raises(RegistryError) as err:
        reg.publish("m", "1", _model_dir(tmp_path, "b", b"new"))
    assert str(err.value) == (f"version 1 of 'm' already exists in registry {root}; versions "
                              f"are immutable: publish a new version, or pass overwrite=True "
                              f"(tlt-pull --overwrite) to replace it")

    info = reg.publish("m", "1", _model_dir(tmp_path, "b", b"new"), overwrite=True)
    assert info.location.startswith("m/1-") and info.location != first.location
    assert [p.name for p in (root / "m").iterdir()] == [info.location.split("/")[1]]
    [path, _] = reg.pull("m", "1", tmp_path / "out")
    assert path.read_bytes() == b"new"


def test_lookup_errors_name_what_exists(tmp_path):
    root = tmp_path / "reg"
    reg = Registry(root)
    with pytest.raises(RegistryError) as err:
        reg.list_models()
    assert str(err.value) == f"registry {root} has no index.json (is this a registry?)"

    src = _model_dir(tmp_path)
    reg.publish("beta", "1", src)
    reg.publish("alpha", "1", src)
    reg.publish("alpha", "2", src)
    with pytest.raises(RegistryError) as err:
        reg.list_versions("gamma")
    assert str(err.value) == f"model 'gamma' not found in registry {root}; available: alpha, beta"
    with pytest.raises(RegistryError) as err:
        reg.pull("alpha", 3, tmp_path / "out")
    assert str(err.value) == "version 3 of 'alpha' not found; available: 1, 2"
    assert not (tmp_path / "out").exists()


def test_malformed_index(tmp_path):
    root = tmp_path / "reg"
    root.mkdir()
    (root / "index.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"index.json is not valid JSON"):
        Registry(root).list_models()
    (root / "index.json").write_text(json.dumps({"models": {"m": {"versions": {
        "1": {"files": [{"path": "../../etc/passwd", "size": 1, "sha256": "0"}]}}}}}))
    with pytest.raises(RegistryError, match=r"models\['m'\]\.versions\['1'\]: files\[0\]: "
                                            r"unsafe file path '\.\./\.\./etc/passwd'"):
        Registry(root).pull("m", "1", tmp_path / "out")


def test_pull_detects_corrupt_registry_copy(tmp_path):
    root = tmp_path / "reg"
    reg = Registry(root)
    location = reg.publish("m", "1", _model_dir(tmp_path)).location
    (root / location / "model.tlt").write_bytes(b"weights-v2")
    with pytest.raises(RegistryError, match=r"model.tlt: sha256 mismatch after download"):
        reg.pull("m", "1", tmp_path / "out")
    assert not (tmp_path / "out" / "model.tlt").exists()
    assert list((tmp_path / "out").iterdir()) == []  # no temporary left behind

    (root / location / "model.tlt").unlink()
    with pytest.raises(RegistryError, match=r"model.tlt is listed in the catalogue but missing"):
        reg.pull("m", "1", tmp_path / "out")


def test_invalid_names_and_empty_input(tmp_path):
    reg = Registry(tmp_path / "reg")
    src = _model_dir(tmp_path)
    with pytest.raises(RegistryError, match=r"invalid model name 'a/b'"):
        reg.publish("a/b", "1", src)
    with pytest.raises(RegistryError, match=r"invalid version '\.\.'"):
        reg.publish("m", "..", src)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="no files found"):
        reg.publish("m", "1", tmp_path / "empty")
    with pytest.raises(RegistryError, match="no such file or folder"):
        reg.publish("m", "1", tmp_path / "absent.tlt")
    assert not (tmp_path / "reg" / "index.json").exists()


def test_metadata_and_application_from_plain_model_file(tmp_path):
    plain = tmp_path / "plain" / "det.tlt"
    save_model_file(plain, b"w", {"task": "detection", "arch": "resnet10", "spec": "x" * 500})
    reg = Registry(tmp_path / "reg")
    info = reg.publish("det", "1", plain, metadata={"arch": "given"})
    assert info.metadata["arch"] == "given" and info.metadata["task"] == "detection"
    assert "spec" not in info.metadata and info.metadata["encrypted"] is False
    assert reg.list_models()[0].application == "Detection"

    enc = tmp_path / "enc" / "cls.tlt"
    save_model_file(enc, b"w", {"task": "classification"}, key="k")
    info = reg.publish("cls", "1", enc)
    assert info.metadata == {}
    assert [m.application for m in reg.list_models()] == ["", "Detection"]


def test_concurrent_publish_keeps_both_models(tmp_path, monkeypatch):
    root = tmp_path / "reg"
    src = _model_dir(tmp_path)
    other = Registry(root)
    real_upload = storage.upload_file
    calls = []

    def upload_then_interleave(local, uri):
        real_upload(local, uri)
        if not calls:  # while "a" uploads, another publisher finishes "b"
            calls.append(uri)
            other.publish("b", "1", src)

    monkeypatch.setattr(registry_mod.storage, "upload_file", upload_then_interleave)
    Registry(root).publish("a", "1", src)
    assert [m.name for m in Registry(root).list_models()] == ["a", "b"]


def test_threads_publishing_different_models(tmp_path):
    root = tmp_path / "reg"
    src = _model_dir(tmp_path)
    errors = []

    def publish(i):
        try:
            Registry(root).publish(f"model{i}", "1", src)
        except Exception as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [m.name for m in Registry(root).list_models()] == [f"model{i}" for i in range(6)]


@pytest.mark.parametrize("bucket_fixture", ["s3_bucket", "gcs_bucket"])
def test_object_store_registry_round_trip(request, tmp_path, bucket_fixture):
    root = f"{request.getfixturevalue(bucket_fixture)}/models/"
    reg = Registry(root)
    assert reg.root == root.rstrip("/")
    src = _model_dir(tmp_path)
    reg.publish("m", "1", src, task="classification")
    reg.publish("n", "1", src / "model.tlt")
    reg.publish("m", "1", _model_dir(tmp_path, "b", b"replacement"), overwrite=True)

    index = json.loads(storage.read_text(f"{reg.root}/index.json"))
    assert sorted(index["models"]) == ["m", "n"]
    location = index["models"]["m"]["versions"]["1"]["location"]
    assert location.startswith("m/1-")
    assert storage.list_files(f"{reg.root}/m") == [
        f"{reg.root}/{location}/model.tlt", f"{reg.root}/{location}/sub/labels.txt"]

    paths = reg.pull("m", "1", tmp_path / "out")
    assert paths[0].read_bytes() == b"replacement"
    assert paths[1].read_text() == "car\nperson\n"
    storage.write_bytes(f"{reg.root}/{location}/model.tlt", b"tampered!!!")
    with pytest.raises(RegistryError, match="sha256 mismatch after download"):
        reg.pull("m", "1", tmp_path / "again")
    with pytest.raises(RegistryError, match=r"^registry s3://|^registry gs://"):
        Registry(f"{reg.root}-absent").list_models()


def test_commit_whose_answer_was_lost_is_recognised(tmp_path, monkeypatch):
    """A create-only commit retried after its first attempt landed gets "exists": its own."""
    real_write_new = storage.write_new

    def landed_but_answer_lost(uri, data):
        assert real_write_new(uri, data) is True
        return False  # what the retry of a timed-out request sees (HTTP 412)

    monkeypatch.setattr(storage, "write_new", landed_but_answer_lost)
    reg = Registry(tmp_path / "reg")
    info = reg.publish("m", "1", _model_dir(tmp_path))
    assert reg.pull("m", "1", tmp_path / "out")[0].read_bytes() == b"weights-v1"
    assert reg.get_version("m", "1") == info
