"""``tlt-infer``: run a trained model on images (guide chapter 7)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from tlt.cli._common import HelpFormatter, check_count, run_main, setup_logging
from tlt.inference.deployed import FRAMEWORK_HELP, FRAMEWORKS

__all__ = ["build_parser", "main"]

_log = logging.getLogger("tlt-infer")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with TLT v1's flags."""
    parser = argparse.ArgumentParser(prog="tlt-infer", description="Run inference with a TLT model.",
                                     formatter_class=HelpFormatter)
    tasks = parser.add_subparsers(dest="task", required=True, metavar="{classification,detection}")
    cls = tasks.add_parser("classification", help="classify images", formatter_class=HelpFormatter)
    cls.add_argument("-m", "--model", required=True,
                     help="the model: a .tlt, an export (.onnx / .etlt) or an engine")
    cls.add_argument("--framework", choices=FRAMEWORKS, default=None, help=FRAMEWORK_HELP)
    source = cls.add_mutually_exclusive_group(required=True)
    source.add_argument("-i", "--image", help="a single image file")
    source.add_argument("-d", "--image_dir", help="a folder of images; result.csv is written into it")
    cls.add_argument("-b", "--batch_size", type=int, default=1, help="inference batch size")
    cls.add_argument("-k", "--key", default=None,
                     help="the key of a .tlt or .etlt model (default: $TLT_KEY)")
    cls.add_argument("-cm", "--class_map", default=None,
                     help="JSON class map {name: index} (default: the classes stored in the model)")
    cls.add_argument("-v", "--verbose", action="store_true", help="detailed logs")

    det = tasks.add_parser("detection", help="detect objects: KITTI labels and/or annotated images",
                           formatter_class=HelpFormatter)
    det.add_argument("-m", "--model", required=True,
                     help="the DetectNet_v2 model: a .tlt, an export (.onnx / .etlt) or an engine")
    det.add_argument("--framework", choices=FRAMEWORKS, default=None, help=FRAMEWORK_HELP)
    det.add_argument("-i", "--inference_input", required=True,
                     help="an image, or a folder of images (.jpg/.jpeg/.png)")
    det.add_argument("-o", "--inference_output", required=True,
                     help="output folder: labels/ (-k) and images_annotated/ (-bo)")
    det.add_argument("-bs", "--batch_size", type=int, default=1, help="inference batch size")
    det.add_argument("-k", "--kitti_dump", action="store_true",
                     help="write KITTI label files with the score as 16th field")
    det.add_argument("-bo", "--box_overlay", action="store_true",
                     help="write the images with the boxes drawn")
    det.add_argument("-cp", "--cluster_params_file", default=None,
                     help="bbox post-processing JSON (default: the spec stored in the model)")
    det.add_argument("-lw", "--line_width", type=int, default=2, help="overlay line width in pixels")
    det.add_argument("-g", "--gpu_set", type=int, default=None,
                     help="index of the GPU to use (default: TensorFlow's choice)")
    det.add_argument("--output_cov", default="output_cov",
                     help="coverage output: a layer name, or TLT's blob name output_cov/Sigmoid")
    det.add_argument("--output_bbox", default="output_bbox",
                     help="bbox output: a layer name, or TLT's blob name output_bbox/BiasAdd")
    det.add_argument("-ek", "--enc_key", default=None,
                     help="the key of a .tlt or .etlt model (default: $TLT_KEY)")
    det.add_argument("-v", "--verbosity", "--verbose", dest="verbose", action="store_true",
                     help="detailed logs")
    return parser


def _select_gpu(index: int, tensorflow: bool = True) -> None:
    """Make GPU ``index`` the only visible one; TensorFlow must not be loaded yet for that.

    With ``tensorflow`` False (an export or engine runs) TensorFlow is neither loaded nor asked.
    """
    from tlt.errors import DataError

    if index < 0:
        raise DataError(f"--gpu_set must be >= 0, got {index}")
    if "tensorflow" in sys.modules:
        _log.info("-g %d: TensorFlow is already loaded in this process; the device set stays as is",
                  index)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
    if not tensorflow:
        return
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        _log.info("-g %d: no GPU is available, running on the CPU", index)


def _detection(args) -> int:
    from tlt.io.modelfile import resolve_key
    from tlt.stages import infer

    check_count("-bs/--batch_size", args.batch_size)
    check_count("-lw/--line_width", args.line_width)
    if args.gpu_set is not None:
        from tlt.inference.deployed import is_deployed

        _select_gpu(args.gpu_set, tensorflow=not is_deployed(args.model, args.framework))
    result = infer.run_detection(
        args.model, args.inference_input, args.inference_output, key=resolve_key(args.enc_key),
        batch_size=args.batch_size, kitti_dump=args.kitti_dump, box_overlay=args.box_overlay,
        cluster_params=args.cluster_params_file, line_width=args.line_width,
        output_cov=args.output_cov, output_bbox=args.output_bbox, progress=sys.stderr.isatty(),
        framework=args.framework)
    boxes = sum(len(f.detections) for f in result.frames)
    written = [f"KITTI labels in {result.labels_dir}"] if result.labels_dir else []
    written += [f"annotated images in {result.annotated_dir}"] if result.annotated_dir else []
    print(f"Processed {len(result.frames)} image(s), {boxes} box(es): {'; '.join(written)}")
    if result.skipped:
        print(f"Skipped {len(result.skipped)} unreadable image(s):")
        for path, reason in result.skipped:
            print(f"  {reason}")
    return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.task == "detection":
        return _detection(args)
    from tlt.io.modelfile import resolve_key
    from tlt.stages import infer

    check_count("-b/--batch_size", args.batch_size)
    predictions, result_csv = infer.run_classification(
        args.model, image=args.image, image_dir=args.image_dir, key=resolve_key(args.key),
        batch_size=args.batch_size, class_map=args.class_map, framework=args.framework)
    if result_csv:
        print(f"Wrote {len(predictions)} predictions to {result_csv}")
    else:
        pred = predictions[0]
        print(f"{pred.path}: class {pred.class_index} ({pred.class_name}), confidence {pred.confidence:.4f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-infer``."""
    return run_main("tlt-infer", _main, argv)
