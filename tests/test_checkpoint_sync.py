"""Checkpoint mirror: a retried pod (a fresh results folder) finds its predecessor's checkpoints in
object storage (a local folder and the moto S3 server) and training resumes from them."""

import json
import time
from pathlib import Path

import pytest

from tlt.errors import StorageError
from tlt.io import storage
from tlt.io.checkpoint_sync import CheckpointMirror, inputs_digest, mirror_uri


def _write_run(folder: Path, epochs: int) -> None:
    """What a trainer leaves: checkpoints, latest.json, a log and a temporary being written."""
    ckpt = folder / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, epochs + 1):
        (ckpt / f"epoch_{epoch:03d}.keras").write_bytes(bytes([epoch]) * 100)
    (ckpt / "latest.json").write_text(json.dumps({"epoch": epochs}))
    (folder / "training.log").write_text(f"{epochs} epochs\n")
    (ckpt / ".partial-99-epoch_999.keras").write_bytes(b"torn")


def _names(uri: str) -> list[str]:
    return [f[len(uri.rstrip("/")) + 1:] for f in storage.list_files(uri)]


@pytest.fixture(params=["local", "s3", "gcs"])
def mirror_root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "mirror")
    bucket = request.getfixturevalue({"s3": "s3_bucket", "gcs": "gcs_bucket"}[request.param])
    return bucket + "/pipeline-root/checkpoints"


def test_a_new_pod_restores_what_the_old_one_pushed(mirror_root, tmp_path):
    old_pod, new_pod = tmp_path / "pod-1" / "model", tmp_path / "pod-2" / "model"
    remote = mirror_uri(mirror_root, "run-123", "train", "abc")
    assert remote == storage.join(mirror_root, "run-123", "train-abc")
    first = CheckpointMirror(old_pod, remote)
    assert first.restore() == []  # first attempt: nothing to resume
    _write_run(old_pod, 2)
    uploaded = first.push()
    # Temporaries never leave the pod; latest.json goes after the checkpoint it names.
    assert uploaded == ["checkpoints/epoch_001.keras", "checkpoints/epoch_002.keras", "training.log",
                        "checkpoints/latest.json"]
    assert first.push() == []  # nothing changed, nothing sent

    restored = CheckpointMirror(new_pod, remote).restore()
    assert restored == ["checkpoints/epoch_001.keras", "checkpoints/epoch_002.keras",
                        "checkpoints/latest.json", "training.log"]
    assert (new_pod / "checkpoints" / "epoch_002.keras").read_bytes() == bytes([2]) * 100
    assert json.loads((new_pod / "checkpoints" / "latest.json").read_text()) == {"epoch": 2}


def test_old_checkpoints_leave_the_mirror_and_local_files_win(mirror_root, tmp_path):
    pod = tmp_path / "pod" / "model"
    remote = mirror_uri(mirror_root, "", "retrain", "d1")
    mirror = CheckpointMirror(pod, remote)
    _write_run(pod, 3)
    mirror.push()
    (pod / "checkpoints" / "epoch_001.keras").unlink()  # the trainer keeps the newest few
    assert mirror.push() == []
    assert "checkpoints/epoch_001.keras" not in _names(remote)
    assert "checkpoints/epoch_003.keras" in _names(remote)
    # A local file is never replaced by the mirror's copy (the local one is as new or newer).
    (pod / "training.log").write_text("local\n")
    assert CheckpointMirror(pod, remote).restore() == []
    assert (pod / "training.log").read_text() == "local\n"


def test_the_context_pushes_in_the_background_and_once_more_on_failure(tmp_path):
    pod, remote = tmp_path / "pod", str(tmp_path / "mirror")
    with CheckpointMirror(pod, remote, interval=0.05):
        _write_run(pod, 1)
        deadline = time.monotonic() + 10
        while "checkpoints/latest.json" not in _names(remote) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "checkpoints/epoch_001.keras" in _names(remote)  # pushed while "training"
    with pytest.raises(KeyboardInterrupt):
        with CheckpointMirror(pod, remote, interval=3600):
            _write_run(pod, 2)
            raise KeyboardInterrupt  # SIGTERM raises Interrupted the same way
    assert "checkpoints/epoch_002.keras" in _names(remote)  # the final push on the way out


def test_a_missing_bucket_is_one_storage_error(s3_bucket, tmp_path):
    with pytest.raises(StorageError, match="bucket"):
        CheckpointMirror(tmp_path / "pod", "s3://no-such-bucket-tlt/ckpt").restore()


def test_digest_separates_tasks_that_train_different_things(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, ratio in ((a, 0.3), (b, 0.5)):
        folder.mkdir()
        (folder / "metadata.json").write_text(json.dumps({"pruning_ratio": ratio}))
    params = {"spec": "s", "epochs": 2, "checkpoint_root": "x", "run_id": "r"}
    skip = ("checkpoint_root", "run_id")
    # Two iterations of a prune sweep: same parameters, different pruned models.
    assert inputs_digest(params, {"pretrained_model": str(a)}, skip) != \
        inputs_digest(params, {"pretrained_model": str(b)}, skip)
    # A retried pod: same parameters and inputs; where the mirror lives does not matter.
    assert inputs_digest(params, {"pretrained_model": str(a)}, skip) == \
        inputs_digest({**params, "checkpoint_root": "y"}, {"pretrained_model": str(a)}, skip)
    assert len(inputs_digest(params, {}, skip)) == 16


TINY_SPEC = """\
model_config { arch: "resnet" n_layers: 10 input_image_size: "3,32,32" }
train_config {
  optimizer: "adam"
  batch_size_per_gpu: 8
  n_epochs: 2
  n_workers: 1
  lr_config { scheduler: "cosine" learning_rate: 0.002 soft_start: 0.1 }
  checkpoint_interval: 1
}
random_seed: 42
"""


@pytest.mark.slow
def test_train_adapter_resumes_in_a_new_pod_from_the_mirror(s3_bucket, tmp_path, monkeypatch):
    """Pod 1 trains and mirrors to S3; it 'dies' after epoch 1 (the mirror holds epoch 1 only).
    Pod 2 starts with an empty results folder and trains epoch 2 only."""
    from tlt.data.synthetic import make_classification_dataset
    from tlt.orchestration import adapters

    monkeypatch.setenv("TLT_KEY", "resume-key")
    data = tmp_path / "data"
    make_classification_dataset(data, images_per_class=(8, 8, 4), size=32, seed=3)
    params = {"task": "classification", "spec": TINY_SPEC, "train_dataset": str(data / "train"),
              "val_dataset": str(data / "val"), "gpus": 1,
              "checkpoint_root": f"{s3_bucket}/root/checkpoints", "run_id": "run-7"}
    first = adapters.train(params, {}, {"model": str(tmp_path / "pod-1" / "model")})["model"]
    assert first["resumed_from_epoch"] == 0
    (remote,) = {f.rsplit("/checkpoints/", 1)[0] for f in storage.list_files(params["checkpoint_root"])
                 if "/checkpoints/epoch_" in f}
    assert remote.startswith(f"{s3_bucket}/root/checkpoints/run-7/train-")
    # Roll the mirror back to the state after epoch 1: as if the pod was killed during epoch 2.
    for uri in storage.list_files(remote):
        if not uri.endswith(("checkpoints/epoch_001.keras", "run_identity.json", "training.log")) \
                and "/checkpoints/" in uri or uri.endswith(("model.tlt", "status.json", "metadata.json")):
            storage.delete(uri)
    storage.write_text(f"{remote}/checkpoints/latest.json",
                       json.dumps({"epoch": 1, "file": "epoch_001.keras"}) + "\n")

    second = adapters.train(params, {}, {"model": str(tmp_path / "pod-2" / "model")})["model"]
    assert second["resumed_from_epoch"] == 1
    assert second["epochs"] == 2
    assert (tmp_path / "pod-2" / "model" / "model.tlt").is_file()
    # The mirror ends complete again (a third attempt would find the finished run).
    assert any(f.endswith("checkpoints/epoch_002.keras") for f in storage.list_files(remote))
