"""``tlt-sample-data``: write a deterministic, learnable sample data set to try the pipelines on.

    tlt-sample-data detection OUT_DIR [--frames N --width W --height H --seed S --format png|jpg]
    tlt-sample-data classification OUT_DIR [--classes a,b,c --train N --val N --test N --size S ...]
"""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from tlt.cli._common import run_main, setup_logging
from tlt.data.synthetic import make_classification_dataset, make_detection_dataset

__all__ = ["PROG", "build_parser", "main"]

PROG = "tlt-sample-data"
_LOG = logging.getLogger(PROG)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per kind of data set."""
    parser = argparse.ArgumentParser(prog=PROG, description="Write a synthetic sample data set.")
    parser.add_argument("-v", "--verbose", action="store_true", help="detailed logs")
    kinds = parser.add_subparsers(dest="kind", required=True)
    det = kinds.add_parser("detection", help="KITTI layout: images/, labels/, sequence map")
    det.add_argument("out_dir", metavar="OUT_DIR")
    det.add_argument("--frames", type=int, default=60, help="number of frames (default 60)")
    det.add_argument("--width", type=int, default=480, help="image width (default 480)")
    det.add_argument("--height", type=int, default=272, help="image height (default 272)")
    det.add_argument("--sequences", type=int, default=6, help="video sequences (default 6)")
    cls = kinds.add_parser("classification", help="train/val/test folders, one per class")
    cls.add_argument("out_dir", metavar="OUT_DIR")
    cls.add_argument("--classes", default="circle,square,triangle",
                     help="comma-separated class names (default circle,square,triangle)")
    cls.add_argument("--train", type=int, default=30, help="training images per class")
    cls.add_argument("--val", type=int, default=10, help="validation images per class")
    cls.add_argument("--test", type=int, default=10, help="test images per class")
    cls.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    for sub in (det, cls):
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sub.add_argument("--format", choices=("png", "jpg"), default="png",
                         help="image format (default png)")
        sub.add_argument("--overwrite", action="store_true",
                         help="replace OUT_DIR if it exists and is not empty")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.kind == "detection":
        info = make_detection_dataset(args.out_dir, num_frames=args.frames, width=args.width,
                                      height=args.height, seed=args.seed,
                                      image_format=args.format, num_sequences=args.sequences,
                                      overwrite=args.overwrite)
        counts = ", ".join(f"{k}: {v}" for k, v in info["class_counts"].items())
        _LOG.info("Wrote %d frames to %s (%s)", info["num_frames"], info["root"], counts)
    else:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        info = make_classification_dataset(args.out_dir, classes=classes,
                                           images_per_class=(args.train, args.val, args.test),
                                           size=args.size, seed=args.seed,
                                           image_format=args.format, overwrite=args.overwrite)
        _LOG.info("Wrote %s images of classes %s to %s", info["splits"], ", ".join(classes),
                  info["root"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-sample-data``; returns the exit code."""
    return run_main(PROG, _main, argv)
