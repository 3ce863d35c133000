"""``tlt-train`` when things go wrong: SIGTERM, a changed spec on resume, a killed run's
temporaries, a results path that is a file, a batch larger than the data set, ``-h``."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from pathlib import Path

import pytest

from checkpoint_helpers import latest_epoch
from cls_fixtures import (VENV_BIN, make_shapes, read_csv_rows, read_json, subprocess_env,
                          write_spec)
from tlt.cli.train import build_parser
from tlt.cli.train import main as train_main
from tlt.training.batching import plan_batches
from tlt.training.results_dir import remove_leftovers

INTERRUPTED = "stopped by SIGTERM; rerun the same command to resume"


def _error_line(stderr: str) -> str:
    """The one ``tlt-train: error:`` line of a failed run (asserting there is exactly one)."""
    errors = [line for line in stderr.splitlines() if line.startswith("tlt-train: error: ")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def _tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root``: relative path -> (mtime in ns, content)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ leftovers of a killed run

def test_remove_leftovers_deletes_temporaries_of_the_trainer_folders_only(tmp_path):
    keep = ["status.json", "notes.tmp", "checkpoints/epoch_001.keras", "checkpoints/latest.json",
            "validation/epoch_001.json", "events/.x.tmp", "data/.frame.png.abc.tmp"]
    gone = [".status.json.k2j3.tmp", "checkpoints/.partial-4242-epoch_002.keras",
            "checkpoints/.epoch_002.npz.a1b2.tmp", "validation/.epoch_002.json.zz.tmp"]
    for name in keep + gone:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    partial_dir = tmp_path / ".model.tlt.q1w2.partial"
    (partial_dir / "inner").mkdir(parents=True)

    removed = remove_leftovers(tmp_path)

    assert sorted(str(p.relative_to(tmp_path)) for p in removed) == sorted(
        gone + [".model.tlt.q1w2.partial"])
    assert all((tmp_path / name).exists() for name in keep)
    assert not any((tmp_path / name).exists() for name in gone) and not partial_dir.exists()


# ------------------------------------------------------------------ bad input: one line

def _detection_spec(path: Path) -> Path:
    from det_fixtures import write_spec as write_detection_spec

    return write_detection_spec(path, {"tfrecords": str(path.parent / "none" / "*"),
                                       "root": str(path.parent / "none")})


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_results_dir_that_is_a_file_is_one_line_and_the_file_is_untouched(task, tmp_path,
                                                                          capsys):
    spec = (write_spec(tmp_path / "spec.txt", tmp_path / "data", epochs=1)
            if task == "classification" else _detection_spec(tmp_path / "spec.txt"))
    results = tmp_path / "results.txt"
    results.write_text("my notes\n")

    code = train_main([task, "-e", str(spec), "-r", str(results)])

    assert code == 1
    assert _error_line(capsys.readouterr().err) == (
        f"tlt-train: error: results folder {results} is an existing file; pass a folder to -r")
    assert results.read_text() == "my notes\n"

    code = train_main([task, "-e", str(spec), "-r", str(results / "sub")])
    assert code == 1
    assert _error_line(capsys.readouterr().err) == (
        f"tlt-train: error: results folder {results / 'sub'}: a parent of it is a file, not a "
        f"folder")


def test_a_spec_that_is_not_utf8_is_one_line(tmp_path, capsys):
    spec = tmp_path / "spec.txt"
    spec.write_bytes(b'model_config {\n  arch: "resnet\xff"\n}\n')
    code = train_main(["classification", "-e", str(spec), "-r", str(tmp_path / "out")])
    assert code == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"tlt-train: error: {spec}:2: is not UTF-8 text: byte 0xff")
    assert not (tmp_path / "out").exists()


def test_a_batch_larger_than_the_training_set_is_one_step_of_all_of_it(caplog):
    with caplog.at_level(logging.WARNING, logger="tlt.training.batching"):
        plan = plan_batches(4096, 1, 12, drop_remainder=False,
                            field="train_config.batch_size_per_gpu")
    assert (plan.batch_size_per_replica, plan.global_batch, plan.steps_per_epoch,
            plan.drop_remainder) == (12, 12, 1, False)
    assert caplog.messages == ["train_config.batch_size_per_gpu 4096 x 1 replica(s) is more "
                               "than the 12 training images: each epoch is one step of 12 per "
                               "replica"]
    caplog.clear()
    # Multi-worker runs drop remainders so all workers step together: the cap keeps a full batch.
    plan = plan_batches(50, 2, 7, drop_remainder=True, field="f", what="training frames")
    assert (plan.batch_size_per_replica, plan.global_batch, plan.steps_per_epoch,
            plan.drop_remainder) == (3, 6, 1, True)
    plan = plan_batches(8, 1, 24, drop_remainder=False, field="f")
    assert (plan.global_batch, plan.steps_per_epoch) == (8, 3)
    assert plan_batches(5, 1, 12, drop_remainder=False, field="f").steps_per_epoch == 3
    assert len(caplog.messages) == 1


def test_help_shows_defaults():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "task")  # noqa: SLF001
    for task in ("classification", "detection"):
        text = " ".join(subparsers.choices[task].format_help().split())
        assert "number of GPUs (replicas) to train on (default: 1)" in text
        assert "(default: $TLT_KEY if set, else a plain file)" in text


# ------------------------------------------------------------------ changed spec on resume

def test_identity_check_names_each_changed_field_and_lets_unknown_folders_pass(tmp_path):
    from tlt.errors import SpecError
    from tlt.training.run_identity import check_identity, record_identity

    check_identity(tmp_path, {"arch": "resnet"})  # written before identities existed: no file
    record_identity(tmp_path, {"arch": "resnet", "n_layers": 10, "classes": ["a", "b"]})
    check_identity(tmp_path, {"arch": "resnet", "n_layers": 10, "classes": ("a", "b")})
    with pytest.raises(SpecError) as caught:
        check_identity(tmp_path, {"arch": "vgg", "n_layers": 16, "classes": ["a", "b"],
                                  "added_later": True})
    assert str(caught.value) == (
        f"the checkpoints in {tmp_path} were trained with another spec: arch resnet -> vgg; "
        f"n_layers 10 -> 16. Use a new results folder (-r), or the spec the run was started with")


def test_resume_with_a_changed_spec_fails_in_one_line_before_writing_anything(tmp_path, capsys):
    data = make_shapes(tmp_path / "data", classes=("a", "b"), per_class=(4, 2, 1), size=16)
    spec = tmp_path / "spec.txt"
    fields = dict(epochs=1, input_image_size="3,16,16", batch_size=8)
    write_spec(spec, data / "train", **fields)
    out = tmp_path / "out"
    assert train_main(["classification", "-e", str(spec), "-r", str(out)]) == 0, \
        capsys.readouterr().err
    capsys.readouterr()
    before = _tree(out)
    ckpts = out / "checkpoints"
    assert read_json(ckpts / "run_identity.json")["classes"] == ["a", "b"]

    # A deeper network, and a new class folder: both named, old -> new, in one line.
    (data / "train" / "c").mkdir()
    for image in sorted((data / "train" / "a").iterdir())[:2]:
        (data / "train" / "c" / image.name).write_bytes(image.read_bytes())
    write_spec(spec, data / "train", n_layers=18, **fields)
    code = train_main(["classification", "-e", str(spec), "-r", str(out)])
    assert code == 2
    assert _error_line(capsys.readouterr().err) == (
        f"tlt-train: error: the checkpoints in {ckpts} were trained with another spec: "
        f"n_layers 10 -> 18; classes [a, b] -> [a, b, c]. Use a new results folder (-r), or the "
        f"spec the run was started with")
    after = _tree(out)
    # Only the run status changed (to failed); classmap.json, checkpoints, model untouched.
    assert {k for k in before if before[k] != after.get(k)} == {"status.json"}
    assert set(after) == set(before)
    assert read_json(out / "status.json")["state"] == "failed"

    write_spec(spec, data / "train", **{**fields, "input_image_size": "3,24,24"})
    code = train_main(["classification", "-e", str(spec), "-r", str(out)])
    assert code == 2
    assert "input_dims [3, 16, 16] -> [3, 24, 24]; classes [a, b] -> [a, b, c]." in \
        _error_line(capsys.readouterr().err)
    assert read_json(out / "classmap.json") == {"a": 0, "b": 1}


# ------------------------------------------------------------------ SIGTERM

def test_sigterm_stops_cleanly_marks_interrupted_and_the_rerun_resumes(tmp_path, capsys):
    data = make_shapes(tmp_path / "data", classes=("a", "b"), per_class=(6, 2, 1), size=16)
    epochs = 8
    spec = write_spec(tmp_path / "spec.txt", data / "train", epochs=epochs,
                      input_image_size="3,16,16", batch_size=4)
    out = tmp_path / "out"
    latest = out / "checkpoints" / "latest.json"
    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(VENV_BIN / "tlt-train"), "classification", "-e", str(spec),
                                 "-r", str(out)], stdout=log, stderr=subprocess.STDOUT,
                                env=subprocess_env())
        try:
            deadline = time.monotonic() + 400
            while time.monotonic() < deadline and proc.poll() is None \
                    and latest_epoch(latest) < 1:
                time.sleep(0.02)
            assert proc.poll() is None, log_path.read_text()[-3000:]
            proc.send_signal(signal.SIGTERM)  # what `timeout` and a Kubernetes eviction send
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log_path.read_text()
    assert code == 143, output[-3000:]
    assert _error_line(output) == f"tlt-train: error: {INTERRUPTED}"
    assert "Traceback" not in output
    status = read_json(out / "status.json")
    assert (status["state"], status["message"]) == ("interrupted", INTERRUPTED)
    stopped_at = latest_epoch(latest)
    assert 1 <= stopped_at < epochs
    # Nothing partial is visible: no model, no lineage, no temporary or torn file.
    assert not (out / "model.tlt").exists() and not (out / "metadata.json").exists()
    assert not [p for p in out.rglob(".*") if "events" not in p.parts]

    code = train_main(["classification", "-e", str(spec), "-r", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"(resumed from epoch {stopped_at})" in captured.out
    assert read_json(out / "status.json")["state"] == "done"
    assert [int(r[0]) for r in read_csv_rows(out / "training_log.csv")[1:]] == list(range(epochs))
    assert read_json(out / "metadata.json")["resumed_from_epoch"] == stopped_at
