"""``tlt-export``: export a trained model to ONNX / .etlt, with INT8 calibration and deployment
configs (guide chapter 9)."""

from __future__ import annotations

import argparse
from typing import Sequence

from tlt.cli._common import HelpFormatter, run_main, setup_logging

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with TLT v1's flags."""
    parser = argparse.ArgumentParser(
        prog="tlt-export", formatter_class=HelpFormatter,
        description="Export a .tlt model to ONNX: an encrypted .etlt (with -k) or a plain .onnx. "
                    "With --data_type int8 it also writes the INT8 calibration cache.")
    parser.add_argument("model", help="the .tlt model to export (local, gs:// or s3://)")
    parser.add_argument("-k", "--key", "--enc_key", dest="key", default=None,
                        help="the model's key; also encrypts an .etlt output (default: $TLT_KEY)")
    parser.add_argument("-o", "--output_file", dest="output", default=None,
                        help="the export: *.etlt (encrypted) or *.onnx (plain) "
                             "(default: ./<model>.etlt)")
    parser.add_argument("-O", "--outputs", default=None,
                        help="comma-separated output names to keep (default: all; classification: "
                             "predictions/Softmax, detection: output_cov/Sigmoid,output_bbox/BiasAdd)")
    parser.add_argument("--data_type", choices=("fp32", "fp16", "int8"), default="fp32",
                        help="engine precision the export is meant for; int8 writes the "
                             "calibration cache")
    parser.add_argument("--cal_data_file", default=None,
                        help="int8: folder of calibration images, like the training images")
    parser.add_argument("--cal_cache_file", default="./cal.bin",
                        help="int8: calibration cache to write (or to reuse without --cal_data_file)")
    parser.add_argument("--batches", type=int, default=10, help="int8: calibration batches")
    parser.add_argument("--cal_batch_size", type=int, default=8,
                        help="int8: images per calibration batch")
    parser.add_argument("--max_batch_size", type=int, default=16,
                        help="largest engine batch (DeepStream / Triton configs)")
    parser.add_argument("--max_workspace_size", type=int, default=1 << 30,
                        help="TensorRT builder workspace in bytes (recorded for tlt-converter)")
    parser.add_argument("--input_dims", default=None,
                        help="C,H,W; checked against the model (default: the model's)")
    parser.add_argument("--gen_ds_config", action="store_true",
                        help="also write a DeepStream nvinfer config and labels.txt beside the export")
    parser.add_argument("--gen_triton_config", action="store_true",
                        help="also write a Triton model repository beside the export")
    parser.add_argument("-v", "--verbose", action="store_true", help="detailed logs")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from tlt.engines.builder import parse_dims, parse_names
    from tlt.io.modelfile import resolve_key
    from tlt.stages import export

    result = export.run(
        args.model, key=resolve_key(args.key), output=args.output,
        outputs=parse_names(args.outputs), data_type=args.data_type,
        cal_data_file=args.cal_data_file, cal_cache_file=args.cal_cache_file,
        batches=args.batches, cal_batch_size=args.cal_batch_size,
        max_batch_size=args.max_batch_size, max_workspace_size=args.max_workspace_size,
        input_dims=parse_dims(args.input_dims, "--input_dims") if args.input_dims else None,
        gen_ds_config=args.gen_ds_config, gen_triton_config=args.gen_triton_config)
    print(f"Exported {args.model} to {result.output} (input input_1 N x "
          f"{' x '.join(map(str, result.metadata['input_dims']))}, outputs "
          f"{', '.join(result.metadata['output_names'])})")
    for label, path in (("calibration cache", result.cal_cache_file),
                        ("DeepStream config", result.ds_config), ("labels", result.labels_file),
                        ("Triton model", result.triton_model_dir)):
        if path:
            print(f"  {label}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-export``."""
    return run_main("tlt-export", _main, argv)
