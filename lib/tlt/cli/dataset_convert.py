"""``tlt-dataset-convert``: a KITTI data set -> TFRecord shards (guide 4.2.4), the `convert` stage.

    tlt-dataset-convert -d SPEC -o OUTPUT [-f VALIDATION_FOLD] [-v] [--strict] [--workers N]

OUTPUT is a prefix, local or gs:// / s3://: its folder receives the shards and metadata.json, its
base name starts every shard name (``<OUTPUT>-fold-000-of-002-shard-00000-of-00010``).
``--strict`` and ``--workers`` are this project's additions.

The new output replaces the previous one in one step, so a failed or killed run leaves the old
one; SIGTERM stops the run and its workers (exit 143, status.json ``interrupted``); a rerun removes
what a killed run left behind.
"""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from tlt.cli._common import HelpFormatter, run_main, setup_logging
from tlt.errors import TLTError

__all__ = ["PROG", "build_parser", "split_output", "main"]

PROG = "tlt-dataset-convert"
_LOG = logging.getLogger(PROG)


class _UsageError(TLTError):
    """Flags that parse but do not make a valid request (argparse's exit code for misuse)."""

    exit_code = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with TLT v1's flags."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Convert a KITTI object-detection data set to TFRecords.",
        formatter_class=HelpFormatter)
    parser.add_argument("-d", "--dataset-export-spec", "--dataset_export_spec", required=True,
                        metavar="DATASET_EXPORT_SPEC",
                        help="dataset export spec (prototxt, YAML or JSON)")
    parser.add_argument("-o", "--output_filename", "--output-filename", required=True,
                        metavar="OUTPUT_FILENAME",
                        help="output prefix: a path or gs:// / s3:// URI; its folder gets "
                             "the shards")
    parser.add_argument("-f", "--validation_fold", "--validation-fold", type=int, default=None,
                        metavar="VALIDATION_FOLD",
                        help="0-based fold training validates on, recorded in metadata.json "
                             "(default: none; random partition mode always uses fold 0)")
    parser.add_argument("-v", "--verbose", action="store_true", help="detailed logs")
    parser.add_argument("--strict", action="store_true",
                        help="fail on the first malformed label line or unreadable image "
                             "instead of skipping it")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes (default: one per core)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def split_output(output: str) -> tuple[str, str]:
    """``"out/dir/name"`` -> ``("out/dir", "name")``; works for local paths and URIs.

    Raises:
        TLTError: the prefix ends with "/" (no base name) or is empty.
    """
    head, _, name = output.rpartition("/")
    if not name:
        raise _UsageError(f"-o/--output_filename {output!r} must end with a file name prefix "
                          "(e.g. out/tfrecords/kitti_trainval), not a folder")
    if not head:
        head = "/" if output.startswith("/") else "."
    elif head.endswith(":/"):  # "s3://bucket" split as "s3:/" + "bucket"
        raise _UsageError(f"-o/--output_filename {output!r} needs a folder inside the bucket "
                          "before the file name prefix (e.g. s3://bucket/tfrecords/kitti)")
    return head, name


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.workers is not None and args.workers < 1:
        raise _UsageError(f"--workers must be >= 1, got {args.workers}")
    out_dir, name = split_output(args.output_filename)
    from tlt.stages import convert

    result = convert.run(args.dataset_export_spec, out_dir, output_name=name,
                         validation_fold=args.validation_fold, strict=args.strict,
                         num_workers=args.workers, progress=not args.no_progress)
    _LOG.info("Wrote %d frames in %d shards to %s", result.num_frames, len(result.shards),
              result.out_dir)
    if result.skipped_objects or result.skipped_frames:
        _LOG.warning("Skipped %d malformed object(s) and %d frame(s); see %s/metadata.json",
                     result.skipped_objects, len(result.skipped_frames), result.out_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tlt-dataset-convert``; returns the exit code."""
    return run_main(PROG, _main, argv)
