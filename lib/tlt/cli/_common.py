"""What every CLI shares: logging set-up and turning library errors into one clear line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Sequence

from tlt.errors import TLTError

__all__ = ["HelpFormatter", "setup_logging", "run_main"]

_LOG_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``-h`` shows every option's default, as TLT users expect; pass as ``formatter_class``."""


def setup_logging(verbose: bool = False) -> None:
    """Log in TLT's format to stderr; ``-v`` shows DEBUG lines."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=_LOG_FORMAT,
                        stream=sys.stderr, force=True)
    # TensorFlow's C++ banner lines are noise for a CLI user unless they asked for detail.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "2")


def run_main(prog: str, main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a `TLTError` becomes ``prog: error: <message>`` and its exit code.

    SIGTERM becomes `tlt.errors.Interrupted` (exit 143) so stages clean up before the process ends.
    Returns the process exit code (0 on success) instead of exiting, so tests can call it.
    """
    from tlt.signals import sigterm_raises

    try:
        with sigterm_raises():
            code = main(argv)
        return int(code or 0)
    except TLTError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
