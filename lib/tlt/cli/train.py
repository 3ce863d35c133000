"""``tlt-train``: train a model (guide chapter 5)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tlt.cli._common import HelpFormatter, run_main, setup_logging

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with TLT v1's flags."""
    parser = argparse.ArgumentParser(prog="tlt-train", description="Train a TLT model.",
                                     formatter_class=HelpFormatter)
    tasks = parser.add_subparsers(dest="task", required=True, metavar="{classification,detection}")
    for task, help_text in (("classification", "train an image classifier"),
                            ("detection", "train a DetectNet_v2 object detector")):
        _add_task_args(tasks.add_parser(task, help=help_text, description=f"{help_text[0].upper()}"
                                        f"{help_text[1:]} (guide chapter 5).",
                                        formatter_class=HelpFormatter), task)
    return parser


def _add_task_args(cls: argparse.ArgumentParser, task: str) -> None:
    cls.add_argument("-e", "--experiment_spec_file", "--experiment_spec", dest="spec", required=True,
                     help=f"{task} experiment spec (prototxt, YAML or JSON)")
    cls.add_argument("-r", "--results_dir", required=True,
                     help="folder for checkpoints, logs and the final model.tlt; rerun to resume")
    cls.add_argument("-k", "--key", default=None,
                     help="key to encrypt the output model (default: $TLT_KEY if set, else a "
                          "plain file)")
    cls.add_argument("--gpus", type=int, default=1, help="number of GPUs (replicas) to train on")
    cls.add_argument("-v", "--verbose", action="store_true", help="detailed logs")


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from tlt.errors import SpecError
    from tlt.io.modelfile import resolve_key
    from tlt.stages import train

    if args.gpus < 1:
        raise SpecError(f"--gpus must be >= 1, got {args.gpus}")
    result = train.run(args.spec, args.results_dir, task=args.task, key=resolve_key(args.key),
                       gpus=args.gpus, progress=sys.stderr.isatty())
    from tlt.training.strategy import is_chief

    if not is_chief():
        print(f"Worker finished {result.epochs} epochs (the chief writes the model)")
        return 0
    print(f"Model written to {result.model_path} after {result.epochs} epochs"
          + (f" (resumed from epoch {result.resumed_from_epoch})" if result.resumed_from_epoch else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-train``."""
    return run_main("tlt-train", _main, argv)
