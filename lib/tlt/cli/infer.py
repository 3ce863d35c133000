"""``tlt-infer``: run a trained model on images (guide chapter 7)."""

from __future__ import annotations

import argparse
from typing import Sequence

from tlt.cli._common import run_main, setup_logging

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with TLT v1's flags."""
    parser = argparse.ArgumentParser(prog="tlt-infer", description="Run inference with a TLT model.")
    tasks = parser.add_subparsers(dest="task", required=True, metavar="{classification}")
    cls = tasks.add_parser("classification", help="classify images")
    cls.add_argument("-m", "--model", required=True, help="the .tlt model")
    source = cls.add_mutually_exclusive_group(required=True)
    source.add_argument("-i", "--image", help="a single image file")
    source.add_argument("-d", "--image_dir", help="a folder of images; result.csv is written into it")
    cls.add_argument("-b", "--batch_size", type=int, default=1, help="inference batch size")
    cls.add_argument("-k", "--key", default=None, help="the model's key (default: $TLT_KEY)")
    cls.add_argument("-cm", "--class_map", default=None,
                     help="JSON class map {name: index} (default: the classes stored in the model)")
    cls.add_argument("-v", "--verbose", action="store_true", help="detailed logs")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from tlt.errors import DataError
    from tlt.io.modelfile import resolve_key
    from tlt.stages import infer

    if args.batch_size < 1:
        raise DataError(f"--batch_size must be >= 1, got {args.batch_size}")
    predictions, result_csv = infer.run_classification(
        args.model, image=args.image, image_dir=args.image_dir, key=resolve_key(args.key),
        batch_size=args.batch_size, class_map=args.class_map)
    if result_csv:
        print(f"Wrote {len(predictions)} predictions to {result_csv}")
    else:
        pred = predictions[0]
        print(f"{pred.path}: class {pred.class_index} ({pred.class_name}), confidence {pred.confidence:.4f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-infer``."""
    return run_main("tlt-infer", _main, argv)
