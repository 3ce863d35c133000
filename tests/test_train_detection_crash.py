"""``tlt-train detection`` killed with SIGKILL during validation: the rerun completes the cut epoch.

The checkpoint of an epoch is written before its validation; a kill in between used to lose that
epoch's CSV row and ``validation/epoch_NNN.json`` for good, since the rerun starts after the
checkpoint. The same run checks FLOAT16 on a CPU: one warning, float32 training.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from det_fixtures import VENV_BIN, read_csv, read_json, run_main, subprocess_env, tiny_data, write_spec
from tlt.cli import train


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return tiny_data(tmp_path_factory.getbasetemp() / "detection_shared")


def _kill_when(proc: subprocess.Popen, log: Path, marker: str, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in log.read_text(encoding="utf-8", errors="replace"):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.01)
    raise AssertionError(f"no {marker!r} within {timeout} s")


@pytest.mark.slow  # two detection runs: ~60 s on a quiet machine
def test_kill_9_during_validation_then_rerun_logs_every_epoch_once(data, tmp_path):
    spec = write_spec(tmp_path / "spec.txt", data, epochs=2, batch_size=6, extra_replacements=[
        ("model_config {", "model_config {\n  training_precision { backend_floatx: FLOAT16 }")])
    results = tmp_path / "results"
    first_log = tmp_path / "first.log"
    with open(first_log, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([str(VENV_BIN / "tlt-train"), "detection", "-e", str(spec),
                                 "-r", str(results)], stdout=log, stderr=subprocess.STDOUT,
                                env=subprocess_env(), text=True)
        try:
            _kill_when(proc, first_log, "validating after epoch 1")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    first = first_log.read_text(encoding="utf-8")
    assert proc.returncode == -signal.SIGKILL
    # Killed inside epoch 1's validation: its checkpoint exists, its row and report do not.
    assert (results / "checkpoints" / "epoch_001.npz").is_file()
    assert not (results / "validation" / "epoch_001.json").exists(), "killed too late"
    assert not (results / "training_log.csv").is_file() or not read_csv(
        results / "training_log.csv")
    # FLOAT16 cannot take effect on a CPU: exactly one warning naming the field (the spec
    # loader's), and training says what it does instead.
    warnings = [line for line in first.splitlines() if "[WARNING]" in line]
    assert len([w for w in warnings if "backend_floatx" in w]) == 1, warnings
    assert "[INFO] tlt.training.detection: model_config.training_precision.backend_floatx: " \
        "FLOAT16 cannot take effect: no GPU is visible" in first
    # A kill during a checkpoint save leaves a temporary like this one.
    leftover = results / "checkpoints" / ".epoch_002.npz.k9x1.tmp"
    leftover.write_bytes(b"torn")

    code, out, err = run_main(train.main, "detection", "-e", spec, "-r", results)

    assert code == 0, err[-3000:]
    assert "(resumed from epoch 1)" in out
    assert "epoch 1 ended before its validation and log row were written; completing them" in err
    assert not leftover.exists()
    rows = read_csv(results / "training_log.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(None not in row for row in rows)  # one header for both runs
    for row, epoch in zip(rows, (1, 2)):
        report = read_json(results / "validation" / f"epoch_{epoch:03d}.json")
        assert float(row["val_mAP"]) == pytest.approx(report["mean_ap"][report["buckets"][0]])
        assert float(row["val_cost"]) > 0 and float(row["loss"]) > 0
    assert sorted(p.name for p in (results / "validation").iterdir()) == [
        "epoch_001.json", "epoch_002.json", "final.json"]
    assert read_json(results / "status.json")["state"] == "done"
    identity = read_json(results / "checkpoints" / "run_identity.json")
    assert identity["precision"] == "float32" and identity["num_layers"] == 10
    from tlt.io.modelfile import load_keras_model

    model, metadata = load_keras_model(results / "model.tlt")
    assert metadata["training_precision"] == "float32"
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
