"""``tlt-prune``: remove filters from a trained model (guide chapter 8).

    tlt-prune -pm model.tlt -o pruned/ -k $KEY -pth 0.5

``-o`` is a ``.tlt`` file, or a folder that receives ``model.tlt`` and ``metadata.json``. The
pruned model must be retrained (``tlt-train`` with it as the pretrained model) to regain accuracy.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from tlt.cli._common import HelpFormatter, run_main, setup_logging
from tlt.pruning.criteria import EQUALIZATION_CRITERIA, NORMALIZERS

__all__ = ["PROG", "build_parser", "main"]

PROG = "tlt-prune"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with TLT v1's flags and defaults."""
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=HelpFormatter,
        description="Prune the filters of a TLT model (classification or DetectNet_v2). "
                    "Retrain the pruned model to regain accuracy.")
    parser.add_argument("-pm", "--pretrained_model", required=True,
                        help="the .tlt model to prune (local path, gs:// or s3://)")
    parser.add_argument("-o", "--output_dir", "--output", dest="output", required=True,
                        help="a .tlt file to write, or a folder that receives model.tlt and "
                             "metadata.json")
    parser.add_argument("-k", "--key", default=None,
                        help="the model's key; the pruned model is encrypted with it "
                             "(default: $TLT_KEY)")
    parser.add_argument("-n", "--normalizer", choices=NORMALIZERS, default="max",
                        help="max: divide each filter norm by the layer's largest; L2: by the L2 "
                             "norm of the vector of the layer's norms")
    parser.add_argument("-eq", "--equalization_criterion", choices=EQUALIZATION_CRITERIA,
                        default="union",
                        help="how layers joined by an element-wise op agree on their filters")
    parser.add_argument("-pg", "--pruning_granularity", type=int, default=8,
                        help="kept filter counts are multiples of this")
    parser.add_argument("-pth", "--pruning_threshold", type=float, default=0.1,
                        help="remove filters whose normalised norm is below this, in (0, 1]")
    parser.add_argument("-nf", "--min_num_filters", type=int, default=16,
                        help="minimum number of filters kept per layer")
    parser.add_argument("-el", "--excluded_layers", nargs="+", action="extend", default=[],
                        metavar="LAYER", help="layers whose filters are all kept")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="detailed logs (every layer's width before and after)")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from tlt.io.modelfile import resolve_key
    from tlt.pruning import PruneSettings
    from tlt.stages import prune

    settings = PruneSettings(normalizer=args.normalizer,
                             equalization_criterion=args.equalization_criterion,
                             pruning_granularity=args.pruning_granularity,
                             pruning_threshold=args.pruning_threshold,
                             min_num_filters=args.min_num_filters,
                             excluded_layers=tuple(args.excluded_layers))
    # Bad options fail before the (slow) model load.
    settings.validate()
    prune.run(args.pretrained_model, args.output, key=resolve_key(args.key), settings=settings)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-prune``."""
    return run_main(PROG, _main, argv)
