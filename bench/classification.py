"""Benchmark: tlt-train classification against a plain Keras ``model.fit`` of the same network.

Data: scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``: 1,797 real 8x8
grey images of 10 classes), upscaled to 32x32 and written as a folder-per-class PNG data set with
a fixed stratified 80/20 train/val split (cached under the temp folder).

Ours: ``tlt.stages.train.run`` on that folder (decode, input pipeline, checkpoints, CSV/TensorBoard
logs, status.json: everything a real run does). Peer: ``build_classifier`` with the same
model_config compiled with the same optimizer, learning rate, loss and batch size, trained with
``model.fit`` on in-memory tensors holding the same pixels. Augmentation and weight decay are off
in both, so the two differ only in what surrounds the network.

Throughput is training images per second over epochs 2..N (epoch 1 traces the graphs), counted
from each epoch's first step to its last training step, so validation and checkpoint writing are
outside the window for both. The timer is attached to our run by wrapping the trainer's status
callback (the only hook the stage offers); the plain run gets the same timer as a callback.

    .venv/bin/python bench/classification.py [--epochs 8] [--batch 32] [--lr 0.02]

The last line printed is the throughput ratio ours / plain (target >= 0.9); accuracy target:
ours within 0.5 point of plain Keras or better.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

SIZE = 32


def _dataset() -> Path:
    """Write the digits once as ``train/<digit>/*.png`` and ``val/<digit>/*.png``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    root = Path(tempfile.gettempdir()) / f"tlt-bench-digits-{SIZE}"
    if (root / "done").exists():
        return root
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    index = np.arange(len(images))
    train_idx, val_idx = train_test_split(index, test_size=0.2, random_state=0,
                                          stratify=digits.target)
    for split, ids in (("train", train_idx), ("val", val_idx)):
        for i in ids:
            folder = root / split / f"digit_{digits.target[i]}"
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(images[i], mode="L").resize((SIZE, SIZE), Image.BILINEAR)
            image.save(folder / f"{i:04d}.png")
    (root / "done").write_text("ok\n")
    return root


def _spec_text(root: Path, epochs: int, batch: int, lr: float) -> str:
    return f"""
model_config {{ arch: "resnet" n_layers: 10 input_image_size: "1,{SIZE},{SIZE}" }}
train_config {{
  train_dataset_path: "{root / 'train'}"
  val_dataset_path: "{root / 'val'}"
  optimizer: "sgd"
  optimizer_config {{ sgd {{ momentum: 0.9 }} }}
  batch_size_per_gpu: {batch}
  n_epochs: {epochs}
  reg_config {{ type: "NONE" }}
  lr_config {{ scheduler: "step" learning_rate: {lr} step_size: 1000 gamma: 0.1 }}
  augmentation_config {{ enable_random_crop: false enable_horizontal_flip: false }}
}}
random_seed: 42
"""


def _timer_class():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Seconds from an epoch's first training step to its last, and steps done."""

        def __init__(self):
            super().__init__()
            self.epochs: list[tuple[float, int]] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start, self._steps, self._last = time.perf_counter(), 0, None

        def on_train_batch_end(self, batch, logs=None):
            self._steps += 1
            self._last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append((self._last - self._start, self._steps))

    return EpochTimer


def _images_per_second(timer, n_images: int) -> float:
    timed = timer.epochs[1:]  # epoch 1 includes tracing
    return n_images * len(timed) / sum(seconds for seconds, _ in timed)


def _run_ours(spec, results: Path):
    import tlt.training.callbacks as callbacks_module
    from tlt.stages import train

    timer_base = _timer_class()
    original = callbacks_module.StatusCallback
    timers = []

    class TimedStatus(original):
        """The trainer's status callback plus the epoch timer (bench-only hook)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.timer = timer_base()
            timers.append(self.timer)

        def on_epoch_begin(self, epoch, logs=None):
            self.timer.on_epoch_begin(epoch, logs)

        def on_train_batch_end(self, batch, logs=None):
            self.timer.on_train_batch_end(batch, logs)

        def on_epoch_end(self, epoch, logs=None):
            self.timer.on_epoch_end(epoch, logs)
            super().on_epoch_end(epoch, logs)

    callbacks_module.StatusCallback = TimedStatus
    try:
        result = train.run(spec, results, progress=False)
    finally:
        callbacks_module.StatusCallback = original
    return result, timers[0]


def _load_split(folder: Path, classes: list[str]):
    from tlt.data.classification import scan_image_folder

    split = scan_image_folder(folder, class_names=classes)
    x = np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float32) for f in split.files])
    x = (x / 127.5 - 1.0)[:, None, :, :]  # same scaling as the pipeline, channels first
    y = np.eye(len(classes), dtype=np.float32)[split.labels]
    return x, y


def _run_plain(spec, root: Path, classes: list[str], epochs: int, batch: int, lr: float):
    import keras

    from tlt.models.classifier import build_classifier

    x, y = _load_split(root / "train", classes)
    xv, yv = _load_split(root / "val", classes)
    keras.utils.set_random_seed(42)
    model = build_classifier(spec.model_config, len(classes))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
                  loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    timer = _timer_class()()
    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, validation_data=(xv, yv),
              callbacks=[timer], verbose=0)
    _, accuracy = model.evaluate(xv, yv, batch_size=batch, verbose=0)
    return float(accuracy), timer, len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from tlt import spec as spec_loader

    root = _dataset()
    spec = spec_loader.loads(_spec_text(root, args.epochs, args.batch, args.lr), "classification")
    with tempfile.TemporaryDirectory(prefix="tlt-bench-cls-") as tmp:
        result, ours_timer = _run_ours(spec, Path(tmp) / "results")
    classes = result.class_names
    n_train = sum(1 for _ in (root / "train").rglob("*.png"))
    n_val = sum(1 for _ in (root / "val").rglob("*.png"))
    ours_acc = result.history["val_accuracy"][-1]
    plain_acc, plain_timer, _ = _run_plain(spec, root, classes, args.epochs, args.batch, args.lr)

    ours_ips = _images_per_second(ours_timer, n_train)
    plain_ips = _images_per_second(plain_timer, n_train)
    print(f"digits: {n_train} train / {n_val} val images at 1x{SIZE}x{SIZE}, 10 classes; "
          f"resnet10, batch {args.batch}, sgd lr {args.lr} momentum 0.9, {args.epochs} epochs; "
          f"cores: {os.cpu_count()}")
    print(f"val accuracy: ours {ours_acc:.4f}  plain keras {plain_acc:.4f}  "
          f"difference {100 * (ours_acc - plain_acc):+.2f} pt")
    print(f"train throughput (epochs 2..{args.epochs}): ours {ours_ips:.1f} images/s  "
          f"plain keras {plain_ips:.1f} images/s")
    print(f"ratio ours/plain: {ours_ips / plain_ips:.2f}")


if __name__ == "__main__":
    main()
