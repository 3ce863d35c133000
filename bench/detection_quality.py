"""Benchmark: what DetectNet_v2 (ResNet-10, from scratch) learns on a CPU budget, in voc and kitti AP.

A synthetic KITTI-layout data set (`tlt.data.synthetic`, seed 20251125, which no test uses) is
converted into TFRecords (random split, 20 % validation), a ResNet-10 DetectNet_v2 is trained on
car and pedestrian with ``examples/specs/detection_tiny.txt`` adjusted to the budget below, and the
final model is scored on the validation fold in both evaluation modes. The tables are printed as
``tlt-evaluate detection`` prints them; the last line is ``mAP voc=XX.X kitti_moderate=YY.Y``.

    .venv/bin/python bench/detection_quality.py [--frames 240] [--width 240] [--height 128]
        [--epochs 30] [--batch 8] [--lr 5e-3] [--work DIR]

Every setting that is not a flag is the example spec's (autoweighting on, coverage foreground
weight 0.05, DBSCAN post-processing, minimum box height 4). No pretrained weights: none can be
downloaded here, so the backbone starts from random initialisation.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = 20251125
_CONVERT = """\
kitti_config {{
  root_directory_path: "{root}"
  image_dir_name: "images"
  label_dir_name: "labels"
  image_extension: ".png"
  partition_mode: "random"
  num_partitions: 2
  val_split: 20
  num_shards: 2
}}
image_directory_path: "{root}"
"""


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=240, help="synthetic frames (20 %% validate)")
    parser.add_argument("--width", type=int, default=240, help="image and network width")
    parser.add_argument("--height", type=int, default=128, help="image and network height")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs")
    parser.add_argument("--batch", type=int, default=8, help="batch size")
    parser.add_argument("--lr", type=float, default=5e-3, help="peak (soft-start) learning rate")
    parser.add_argument("--no-autoweighting", action="store_true", help="keep the initial weights")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    return parser.parse_args(argv)


def _build_spec(args, tfrecords: str, root: str):
    from tlt import spec as spec_loader

    spec = spec_loader.load(REPO / "examples" / "specs" / "detection_tiny.txt", "detection")
    spec.random_seed = 7
    source = spec.dataset_config.data_sources[0]
    source.tfrecords_path, source.image_directory_path = tfrecords, root
    pre = spec.augmentation_config.preprocessing
    pre.output_image_width, pre.output_image_height = args.width, args.height
    tc = spec.training_config
    tc.num_epochs, tc.batch_size_per_gpu = args.epochs, args.batch
    tc.checkpoint_interval = max(1, args.epochs // 3)
    tc.learning_rate.soft_start_annealing_schedule.max_learning_rate = args.lr
    spec.cost_function_config.enable_autoweighting = not args.no_autoweighting
    # One validation at the end: the benchmark's figures come from the separate evaluation.
    spec.evaluation_config.first_validation_epoch = args.epochs
    spec.evaluation_config.validation_period_during_training = args.epochs
    return spec


def main(argv=None) -> int:
    """Run the benchmark; print both AP tables and the summary line."""
    args = _parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
                        stream=sys.stderr)
    from tlt.data.synthetic import make_detection_dataset
    from tlt.stages import convert, evaluate, train

    work = Path(args.work or tempfile.mkdtemp(prefix="tlt-bench-det-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    root = work / "kitti"
    info = make_detection_dataset(root, num_frames=args.frames, width=args.width,
                                  height=args.height, seed=SEED, overwrite=True)
    (work / "convert.txt").write_text(_CONVERT.format(root=root), encoding="utf-8")
    convert.run(str(work / "convert.txt"), str(work / "tfrecords"), output_name="train",
                num_workers=1, progress=False)
    spec = _build_spec(args, f"{work / 'tfrecords'}/train*", str(root))
    train_started = time.monotonic()
    result = train.run(spec, work / "results", task="detection", progress=False)
    train_seconds = time.monotonic() - train_started

    figures = {}
    for mode in ("voc", "kitti"):
        evaluation = evaluate.run_detection(spec, result.model_path, mode=mode,
                                            results_json=str(work / f"evaluation_{mode}.json"))
        print(f"\n{mode} mode, {evaluation.num_frames} validation frames, validation cost "
              f"{evaluation.validation_cost:.6f}")
        print(evaluation.results.table())
        figures[mode] = evaluation.results.mean_ap
    counts = ", ".join(f"{k} {v}" for k, v in info["class_counts"].items())
    print(f"\nbudget: {args.frames} frames at {args.width}x{args.height} ({counts}), 80/20 split; "
          f"ResNet-10 from scratch, {args.epochs} epochs of batch {args.batch}, peak lr {args.lr:g}, "
          f"autoweighting {'off' if args.no_autoweighting else 'on'}; cores: {os.cpu_count()}")
    print(f"time: training {train_seconds:.0f} s, total {time.monotonic() - started:.0f} s")
    voc, kitti = figures["voc"].get("combined"), figures["kitti"].get("moderate")
    print(f"mAP voc={_fmt(voc)} kitti_moderate={_fmt(kitti)}")
    return 0


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
