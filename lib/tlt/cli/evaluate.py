"""``tlt-evaluate``: evaluate a trained model (guide chapter 6)."""

from __future__ import annotations

import argparse
from typing import Sequence

from tlt.cli._common import HelpFormatter, check_count, run_main, setup_logging
from tlt.inference.deployed import FRAMEWORK_HELP, FRAMEWORKS

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with TLT v1's flags."""
    parser = argparse.ArgumentParser(prog="tlt-evaluate", description="Evaluate a TLT model, an export or an engine.",
                                     formatter_class=HelpFormatter)
    tasks = parser.add_subparsers(dest="task", required=True, metavar="{classification,detection}")
    cls = tasks.add_parser("classification", help="evaluate an image classifier",
                           formatter_class=HelpFormatter)
    cls.add_argument("-d", "--target_dir", required=True,
                     help="data set folder with one sub-folder per class (local, gs://, s3://)")
    cls.add_argument("-pm", "--pretrained_model", required=True,
                     help="the model to evaluate: a .tlt, an export (.onnx / .etlt) or an engine")
    cls.add_argument("--framework", choices=FRAMEWORKS, default=None, help=FRAMEWORK_HELP)
    cls.add_argument("-k", "--key", default=None,
                     help="the key of a .tlt or .etlt model (default: $TLT_KEY)")
    cls.add_argument("-b", "--batch_size", type=int, default=32, help="images per batch")
    cls.add_argument("-w", "--workers", type=int, default=8, help="accepted for compatibility")
    cls.add_argument("--top_k", type=int, default=5, help="k of the top-k accuracy")
    cls.add_argument("--results_json", default=None,
                     help="write every number as JSON here (default: evaluation.json next to the model)")
    cls.add_argument("-v", "--verbose", action="store_true", help="detailed logs")

    det = tasks.add_parser("detection", help="evaluate a DetectNet_v2 model, or score prediction files",
                           formatter_class=HelpFormatter)
    det.add_argument("-e", "--experiment_spec_file", dest="spec", default=None,
                     metavar="EXPERIMENT_SPEC_FILE",
                     help="the training spec (validation data, classes, overlaps, buckets)")
    det.add_argument("-m", "--model", default=None, metavar="MODEL_FILE",
                     help="the model to evaluate: a .tlt, an export (.onnx / .etlt) or an engine")
    det.add_argument("--framework", choices=FRAMEWORKS, default=None, help=FRAMEWORK_HELP)
    det.add_argument("-k", "--key", default=None,
                     help="the key of a .tlt or .etlt model (default: $TLT_KEY)")
    det.add_argument("--use_training_set", action="store_true",
                     help="evaluate on the training + validation data (default: validation only)")
    det.add_argument("--labels_dir", default=None,
                     help="ground-truth KITTI label files (with --predictions_dir: no model needed)")
    det.add_argument("--predictions_dir", default=None,
                     help="KITTI prediction files with the score as 16th field, matched by file name")
    det.add_argument("--mode", choices=("voc", "kitti"), default=None,
                     help="voc (TLT's AP) or kitti (official benchmark); default: the spec's, else voc")
    det.add_argument("--ap_mode", choices=("11", "40", "all"), default=None,
                     help="recall points (11, 40) or all-point interpolation (voc only); "
                          "default: the spec's, else 11")
    det.add_argument("-b", "--batch_size", type=int, default=None,
                     help="frames per batch (default: the spec's batch_size_per_gpu)")
    det.add_argument("--results_json", default=None, help="write every number as JSON here")
    det.add_argument("-v", "--verbose", action="store_true", help="detailed logs")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.task == "detection":
        check_count("--batch_size", args.batch_size)
        return _detection(args)
    for flag in ("batch_size", "workers", "top_k"):
        check_count(f"--{flag}", getattr(args, flag))
    return _classification(args)


def _classification(args) -> int:
    from tlt.io import storage
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate

    results_json = args.results_json
    if results_json is None:
        parent = args.pretrained_model.rsplit("/", 1)[0] if "/" in args.pretrained_model else "."
        results_json = storage.join(parent, "evaluation.json")
    result = evaluate.run_classification(args.pretrained_model, args.target_dir,
                                         key=resolve_key(args.key), batch_size=args.batch_size,
                                         top_k=args.top_k, results_json=results_json,
                                         framework=args.framework)
    if "runtime" in result.metrics:
        print(f"Model: {args.pretrained_model} ({result.metrics['runtime']}, no TensorFlow)")
    print(result.table)
    print(f"\nResults written to {result.results_json}")
    return 0


def _detection(args) -> int:
    from tlt import spec as spec_loader
    from tlt.errors import DataError

    spec = spec_loader.load(args.spec, "detection") if args.spec else None
    if args.labels_dir or args.predictions_dir:
        if not (args.labels_dir and args.predictions_dir):
            raise DataError("--labels_dir and --predictions_dir go together")
        _detection_files(args, spec)
    elif not (spec and args.model):
        raise DataError("give -e SPEC and -m MODEL, or --labels_dir and --predictions_dir")
    else:
        _detection_model(args, spec)
    if args.results_json:
        print(f"\nResults written to {args.results_json}")
    return 0


def _detection_files(args, spec) -> None:
    from tlt.stages import evaluate

    results = evaluate.run_detection_files(args.labels_dir, args.predictions_dir, spec=spec,
                                           mode=args.mode, ap_mode=args.ap_mode,
                                           results_json=args.results_json)
    print(f"Found {results.num_frames} samples in {args.labels_dir}")
    print(results.table())


def _detection_model(args, spec) -> None:
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate

    evaluation = evaluate.run_detection(spec, args.model, key=resolve_key(args.key),
                                        use_training_set=args.use_training_set, mode=args.mode,
                                        ap_mode=args.ap_mode, batch_size=args.batch_size,
                                        results_json=args.results_json, framework=args.framework)
    where = "training and validation sets" if args.use_training_set else "validation set"
    if evaluation.runtime:
        print(f"Model: {args.model} ({evaluation.runtime}, no TensorFlow)")
    # The guide's wording (its evaluator logs "Found 1802 samples in validation set").
    print(f"Found {evaluation.num_frames} samples in {where}")
    if evaluation.validation_cost is None:
        print("Validation cost: n/a (needs the .tlt model's training loss)")
    else:
        print(f"Validation cost: {evaluation.validation_cost:.6f}")
    print(evaluation.results.table())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-evaluate``."""
    return run_main("tlt-evaluate", _main, argv)
