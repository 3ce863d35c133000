"""``tlt-evaluate``: evaluate a trained model (guide chapter 6)."""

from __future__ import annotations

import argparse
from typing import Sequence

from tlt.cli._common import run_main, setup_logging

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with TLT v1's flags."""
    parser = argparse.ArgumentParser(prog="tlt-evaluate", description="Evaluate a TLT model.")
    tasks = parser.add_subparsers(dest="task", required=True, metavar="{classification}")
    cls = tasks.add_parser("classification", help="evaluate an image classifier")
    cls.add_argument("-d", "--target_dir", required=True,
                     help="data set folder with one sub-folder per class (local, gs://, s3://)")
    cls.add_argument("-pm", "--pretrained_model", required=True, help="the .tlt model to evaluate")
    cls.add_argument("-k", "--key", default=None, help="the model's key (default: $TLT_KEY)")
    cls.add_argument("-b", "--batch_size", type=int, default=32, help="images per batch")
    cls.add_argument("-w", "--workers", type=int, default=8, help="accepted for compatibility")
    cls.add_argument("--top_k", type=int, default=5, help="k of the top-k accuracy")
    cls.add_argument("--results_json", default=None,
                     help="write every number as JSON here (default: evaluation.json next to the model)")
    cls.add_argument("-v", "--verbose", action="store_true", help="detailed logs")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from tlt.errors import DataError
    from tlt.io import storage
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate

    if args.batch_size < 1:
        raise DataError(f"--batch_size must be >= 1, got {args.batch_size}")
    results_json = args.results_json
    if results_json is None:
        parent = args.pretrained_model.rsplit("/", 1)[0] if "/" in args.pretrained_model else "."
        results_json = storage.join(parent, "evaluation.json")
    result = evaluate.run_classification(args.pretrained_model, args.target_dir,
                                         key=resolve_key(args.key), batch_size=args.batch_size,
                                         top_k=args.top_k, results_json=results_json)
    print(result.table)
    print(f"\nResults written to {result.results_json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-evaluate``."""
    return run_main("tlt-evaluate", _main, argv)
