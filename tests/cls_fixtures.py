"""Helpers of the classification tests: tiny learnable data sets, specs, broken images, CLI runs.

The data sets come from `tlt.data.synthetic.make_classification_dataset` (coloured shapes, one
hue per class, so a ResNet-10 at 32x32 learns them in a couple of epochs on a CPU).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from cli_processes import VENV_BIN, subprocess_env  # noqa: F401  (re-exported)
from tlt.data.synthetic import make_classification_dataset

__all__ = ["REPO", "VENV_BIN", "make_shapes", "write_spec", "spec_text", "write_png",
           "write_truncated_png", "read_json", "read_csv_rows", "run_cli", "subprocess_env"]

REPO = Path(__file__).resolve().parents[1]

_SPEC = """\
model_config {{
  arch: "{arch}"
  n_layers: {n_layers}
  input_image_size: "{input_image_size}"
}}
train_config {{
  train_dataset_path: "{train}"
{val_line}{pretrained_line}  optimizer: "{optimizer}"
  batch_size_per_gpu: {batch_size}
  n_epochs: {epochs}
  n_workers: 2
  checkpoint_interval: {checkpoint_interval}
  reg_config {{ type: "L2" scope: "Conv2D,Dense" weight_decay: 0.00005 }}
  lr_config {{ scheduler: "step" learning_rate: {learning_rate} step_size: 10 gamma: 0.5 }}
  augmentation_config {{ enable_random_crop: {crop} enable_horizontal_flip: true }}
}}
random_seed: {seed}
"""


def make_shapes(root: Path, *, classes=("circle", "square", "triangle"), per_class=(8, 4, 4),
                size: int = 32, seed: int = 0) -> Path:
    """Write ``root/{train,val,test}/<class>/*.png`` and return ``root``."""
    make_classification_dataset(root, classes=classes, images_per_class=per_class, size=size,
                                seed=seed)
    return Path(root)


def spec_text(train: Path | str, val: Path | str | None = None, *, arch: str = "resnet",
              n_layers: int = 10, input_image_size: str = "3,32,32", epochs: int = 2,
              batch_size: int = 8, optimizer: str = "sgd", learning_rate: float = 0.01,
              checkpoint_interval: int = 1, pretrained: str | None = None, crop: bool = False,
              seed: int = 42) -> str:
    """A classification spec in TLT's prototxt form (guide 11.1) for a tiny run."""
    return _SPEC.format(
        arch=arch, n_layers=n_layers, input_image_size=input_image_size, train=train,
        val_line=f'  val_dataset_path: "{val}"\n' if val else "",
        pretrained_line=f'  pretrained_model_path: "{pretrained}"\n' if pretrained else "",
        optimizer=optimizer, batch_size=batch_size, epochs=epochs,
        checkpoint_interval=checkpoint_interval, learning_rate=learning_rate,
        crop="true" if crop else "false", seed=seed)


def write_spec(path: Path, train: Path | str, val: Path | str | None = None, **fields) -> Path:
    """Write `spec_text` to ``path`` and return it."""
    path = Path(path)
    path.write_text(spec_text(train, val, **fields), encoding="utf-8")
    return path


def write_png(path: Path, color=(200, 30, 30), size=(20, 20), mode: str = "RGB") -> Path:
    """Write a solid-colour image (format from the suffix) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fill = color if mode == "RGB" else color[0]
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.new(mode, size, fill).save(path, format=fmt)
    return path


def write_truncated_png(path: Path) -> Path:
    """Write a PNG cut in half: the header reads, the end marker is missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def read_json(path: Path) -> dict:
    """Parse a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_csv_rows(path: Path) -> list[list[str]]:
    """Rows of a CSV file (header included), split on commas."""
    return [line.split(",") for line in Path(path).read_text(encoding="utf-8").splitlines() if line]




def run_cli(tool: str, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run an installed CLI (``tlt-train`` ...) in a subprocess and capture its output."""
    return subprocess.run([str(VENV_BIN / tool), *args], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(**env), check=False)
