"""``tlt-sample-data``: write a deterministic, learnable sample data set to try the pipelines on.

    tlt-sample-data detection OUT_DIR [--frames N --width W --height H --seed S --format png|jpg]
    tlt-sample-data classification OUT_DIR [--classes a,b,c --train N --val N --test N --size S ...]
"""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from tlt.cli._common import HelpFormatter, run_main, setup_logging
from tlt.data.synthetic import (
    CLASSIFICATION_LIMITS, DETECTION_LIMITS, make_classification_dataset, make_detection_dataset,
)

__all__ = ["PROG", "build_parser", "main"]

PROG = "tlt-sample-data"
_LOG = logging.getLogger(PROG)


def _bounded(limits: tuple[int, int]):
    """An argparse type: an integer within ``limits`` (inclusive), else a usage error."""
    lo, hi = limits

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {value}")
        return value

    parse.__name__ = "integer"  # what argparse names in its messages
    return parse


def _span(limits: tuple[int, int]) -> str:
    return f"{limits[0]}-{limits[1]}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per kind of data set."""
    parser = argparse.ArgumentParser(prog=PROG, description="Write a synthetic sample data set.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="detailed logs")
    kinds = parser.add_subparsers(dest="kind", required=True)
    det = kinds.add_parser("detection", help="KITTI layout: images/, labels/, sequence map",
                           formatter_class=HelpFormatter)
    det.add_argument("out_dir", metavar="OUT_DIR")
    limits = DETECTION_LIMITS
    det.add_argument("--frames", type=_bounded(limits["num_frames"]), default=60,
                     help=f"number of frames, {_span(limits['num_frames'])}")
    det.add_argument("--width", type=_bounded(limits["width"]), default=480,
                     help=f"image width in pixels, {_span(limits['width'])}")
    det.add_argument("--height", type=_bounded(limits["height"]), default=272,
                     help=f"image height in pixels, {_span(limits['height'])}")
    det.add_argument("--sequences", type=_bounded(limits["num_sequences"]), default=6,
                     help=f"video sequences, {_span(limits['num_sequences'])}")
    cls = kinds.add_parser("classification", help="train/val/test folders, one per class",
                           formatter_class=HelpFormatter)
    cls.add_argument("out_dir", metavar="OUT_DIR")
    cls.add_argument("--classes", default="circle,square,triangle",
                     help="comma-separated class names")
    per_class = CLASSIFICATION_LIMITS["images_per_class"]
    for split, default in (("train", 30), ("val", 10), ("test", 10)):
        cls.add_argument(f"--{split}", type=_bounded(per_class), default=default,
                         help=f"{split} images per class, {_span(per_class)}")
    size = CLASSIFICATION_LIMITS["size"]
    cls.add_argument("--size", type=_bounded(size), default=32,
                     help=f"image side in pixels, {_span(size)}")
    for sub in (det, cls):
        sub.add_argument("--seed", type=int, default=0, help="random seed")
        sub.add_argument("--format", choices=("png", "jpg"), default="png", help="image format")
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
