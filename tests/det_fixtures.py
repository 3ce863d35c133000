"""Helpers of the DetectNet_v2 end-to-end tests: a tiny converted data set, specs, a trained model.

Everything expensive is built once per test session and shared across the detection test modules.
Fixtures imported into several modules become separate pytest fixtures, so the work itself is
memoised here (``_ONCE``) and the fixtures only hand out the cached result.

The data set is `tlt.data.synthetic` at 128x64 (the network input, a multiple of 16, allowed by
``preprocessing.allow_small_input``), converted into 2 random folds; fold 0 (25 %) validates.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cli_processes import VENV_BIN, subprocess_env  # noqa: F401  (re-exported)
from tlt.data.synthetic import make_detection_dataset

__all__ = ["REPO", "VENV_BIN", "WIDTH", "HEIGHT", "TINY_SPEC", "tiny_data", "spec_text", "write_spec",
           "trained_model", "run_cli", "run_main", "subprocess_env", "read_csv", "read_json",
           "load_state_extra", "write_kitti"]

REPO = Path(__file__).resolve().parents[1]
TINY_SPEC = REPO / "examples" / "specs" / "detection_tiny.txt"
WIDTH, HEIGHT = 128, 64
FRAMES = 24
DATA_SEED = 3

_ONCE: dict[str, object] = {}

_CONVERT = """\
kitti_config {{
  root_directory_path: "{root}"
  image_dir_name: "images"
  label_dir_name: "labels"
  image_extension: ".png"
  partition_mode: "random"
  num_partitions: 2
  val_split: 25
  num_shards: 2
}}
image_directory_path: "{root}"
"""




def run_cli(tool: str, *args: str, cwd: Path | None = None, timeout: float = 600,
            **env: str) -> subprocess.CompletedProcess:
    """Run an installed CLI (``tlt-train`` ...) in a subprocess and capture its output."""
    return subprocess.run([str(VENV_BIN / tool), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(**env), cwd=cwd, check=False)


def run_main(main, *args) -> tuple[int, str, str]:
    """Call a CLI ``main(argv)`` in this process; return ``(exit code, stdout, stderr)``.

    The CLIs log to ``sys.stderr`` as it is when they start, so redirecting it captures the log.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file with a header, as dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_json(path: Path) -> dict:
    """Parse a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_state_extra(path: Path) -> dict:
    """The JSON ``extra`` state stored in a ``checkpoints/epoch_NNN.npz`` file."""
    with np.load(path) as data:
        return json.loads(bytes(data["extra"]).decode("utf-8"))


def write_kitti(path: Path, rows, score: bool = False) -> Path:
    """Write KITTI lines ``(class, x1, y1, x2, y2[, score])`` (15 fields, 16 with the score)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for row in rows:
        name, x1, y1, x2, y2 = row[:5]
        line = f"{name} 0.00 0 0.00 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} 0.00 0.00 0.00 0.00 0.00 0.00 0.00"
        if score:
            line += f" {row[5]:.4f}"
        lines.append(line + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def tiny_data(base: Path) -> dict:
    """The shared data set: ``{"root": KITTI folder, "tfrecords": shard pattern}`` (built once)."""
    if "data" not in _ONCE:
        from tlt.stages import convert

        Path(base).mkdir(parents=True, exist_ok=True)
        root = Path(base) / "kitti"
        make_detection_dataset(root, num_frames=FRAMES, width=WIDTH, height=HEIGHT, seed=DATA_SEED)
        spec = Path(base) / "convert.txt"
        spec.write_text(_CONVERT.format(root=root), encoding="utf-8")
        out = Path(base) / "tfrecords"
        convert.run(str(spec), str(out), output_name="train", num_workers=1, progress=False)
        _ONCE["data"] = {"root": root, "tfrecords": f"{out}/train*"}
    return _ONCE["data"]  # type: ignore[return-value]


def spec_text(data: dict, *, epochs: int = 2, batch_size: int = 4, autoweighting: bool = True,
              width: int = WIDTH, height: int = HEIGHT, extra_replacements=()) -> str:
    """``examples/specs/detection_tiny.txt`` pointed at ``data`` with the given sizes.

    Each replacement ``(old, new)`` must occur exactly once in the spec, so a change to the
    example spec breaks the tests loudly instead of silently testing something else.
    """
    text = TINY_SPEC.read_text(encoding="utf-8")
    replacements = [
        ('tfrecords_path: "data/tfrecords/train*"', f'tfrecords_path: "{data["tfrecords"]}"'),
        ('image_directory_path: "data/kitti"', f'image_directory_path: "{data["root"]}"'),
        ("num_epochs: 2", f"num_epochs: {epochs}"),
        ("batch_size_per_gpu: 2", f"batch_size_per_gpu: {batch_size}"),
        ("output_image_width: 240", f"output_image_width: {width}"),
        ("output_image_height: 128", f"output_image_height: {height}"),
        ("enable_autoweighting: true", f"enable_autoweighting: {str(autoweighting).lower()}"),
        *extra_replacements,
    ]
    for old, new in replacements:
        count = text.count(old)
        if count != 1:
            raise AssertionError(f"{TINY_SPEC}: {old!r} occurs {count} times, expected once")
        text = text.replace(old, new)
    return text


def write_spec(path: Path, data: dict, **kwargs) -> Path:
    """Write `spec_text` to ``path`` and return it."""
    path = Path(path)
    path.write_text(spec_text(data, **kwargs), encoding="utf-8")
    return path


def _wait_for(proc: subprocess.Popen, log: Path, marker: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in log.read_text(encoding="utf-8", errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before {marker!r}:\n"
                                 + log.read_text(encoding="utf-8", errors="replace")[-3000:])
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {marker!r} within {timeout} s")


def trained_model(base: Path) -> dict:
    """Train the shared tiny model once, the way a preempted job does.

    A ``tlt-train detection`` subprocess is killed with SIGKILL as soon as its second epoch
    starts (the first checkpoint exists); the run is then finished in this process through
    ``tlt.cli.train.main`` on the same results folder, which resumes from the checkpoint.

    Returns:
        ``{"spec", "results", "model", "first_log", "code", "stdout", "stderr",
        "ckpt1_extra"}``: the second run's exit code and output, and the ``extra`` state of
        ``epoch_001.npz`` read right after the kill (before the resumed run replaces files).
    """
    if "model" not in _ONCE:
        from tlt.cli import train

        data = tiny_data(base)
        # Validation only after epoch 2: the killed run need not pay for tracing it.
        spec = write_spec(Path(base) / "spec.txt", data, epochs=2, batch_size=4, extra_replacements=[
            ("first_validation_epoch: 1", "first_validation_epoch: 2")])
        results = Path(base) / "results"
        first_log = Path(base) / "first_run.log"
        with open(first_log, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(
                [str(VENV_BIN / "tlt-train"), "detection", "-e", str(spec), "-r", str(results)],
                stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(), text=True)
            try:
                _wait_for(proc, first_log, "Epoch 2/2", timeout=400)
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
        extra = load_state_extra(results / "checkpoints" / "epoch_001.npz")
        code, out, err = run_main(train.main, "detection", "-e", spec, "-r", results)
        _ONCE["model"] = {"spec": spec, "results": results, "model": results / "model.tlt",
                          "first_log": first_log.read_text(encoding="utf-8"), "code": code,
                          "stdout": out, "stderr": err, "ckpt1_extra": extra,
                          "returncode_killed": proc.returncode, "data": data}
    return _ONCE["model"]  # type: ignore[return-value]
