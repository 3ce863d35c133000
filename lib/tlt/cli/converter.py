"""``tlt-converter``: build an inference engine from an export (guide chapter 10).

TensorRT on NVIDIA GPUs; ONNX Runtime on CPUs (the default where TensorRT or a GPU is missing).
"""

from __future__ import annotations

import argparse
from typing import Sequence

from tlt.cli._common import HelpFormatter, run_main, setup_logging
from tlt.engines.onnxruntime_engine import DEFAULT_FLOAT_TAIL, FLOAT_TAILS

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with TLT v1's flags."""
    parser = argparse.ArgumentParser(
        prog="tlt-converter", formatter_class=HelpFormatter,
        description="Build an inference engine (TensorRT plan or ONNX Runtime graph) from a model "
                    "exported with tlt-export; writes the engine and <engine>.json beside it.")
    parser.add_argument("input_file", help="the .etlt or .onnx written by tlt-export")
    parser.add_argument("-k", "--key", default=None,
                        help="the .etlt's key (default: $TLT_KEY; not needed for .onnx)")
    parser.add_argument("-d", "--input_dims", required=True,
                        help="C,H,W input dimensions; must match the export")
    parser.add_argument("-o", "-O", "--outputs", required=True,
                        help="comma-separated output names; must be outputs of the export")
    parser.add_argument("-e", "--engine", default="./saved.engine", help="engine file to write")
    parser.add_argument("-c", "--cache", default="./cal.bin",
                        help="int8: calibration cache written by tlt-export")
    parser.add_argument("-b", "--batch_size", type=int, default=8,
                        help="calibration batch size (TensorRT's optimal batch)")
    parser.add_argument("-m", "--max_batch_size", type=int, default=16,
                        help="largest batch the engine runs at once")
    parser.add_argument("-t", "--data_type", choices=("fp32", "fp16", "int8"), default="fp32",
                        help="engine precision")
    parser.add_argument("-w", "--max_workspace_size", type=int, default=1 << 30,
                        help="TensorRT builder workspace in bytes")
    parser.add_argument("-i", "--input_order", choices=("nchw", "nhwc", "nc"), default="nchw",
                        help="input dimension order (TLT exports are nchw)")
    parser.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"), default="auto",
                        help="auto: TensorRT when it and a GPU are present, else ONNX Runtime")
    parser.add_argument("--int8_float_tail", choices=FLOAT_TAILS, default=DEFAULT_FLOAT_TAIL,
                        help="ONNX Runtime int8: how much of the network's end stays fp32. "
                             "residual: the last residual sum, the convolutions feeding it and "
                             "the 1x1 heads (most accurate); head: the sum and the heads; "
                             "outputs: only the output nodes (fastest); auto: residual for "
                             "detectors, head for classifiers (their pooling averages the "
                             "8-bit steps away)")
    parser.add_argument("-v", "--verbose", action="store_true", help="detailed logs")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from tlt.engines.builder import parse_dims, parse_names
    from tlt.engines.sidecar import sidecar_path
    from tlt.io.modelfile import resolve_key
    from tlt.stages import build_engine

    info = build_engine.run(
        args.input_file, key=resolve_key(args.key), input_dims=parse_dims(args.input_dims),
        outputs=parse_names(args.outputs), engine_path=args.engine, cache_file=args.cache,
        batch_size=args.batch_size, max_batch_size=args.max_batch_size,
        precision=args.data_type, workspace=args.max_workspace_size,
        input_order=args.input_order, backend=args.backend, int8_float_tail=args.int8_float_tail)
    print(f"Built a {info.precision} {info.backend} engine {args.engine} (sidecar "
          f"{sidecar_path(args.engine)}): input {info.input_name} N x "
          f"{' x '.join(map(str, info.input_dims))}, outputs {', '.join(info.output_names)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-converter``."""
    return run_main("tlt-converter", _main, argv)
