"""What every CLI shares: logging set-up, a quiet start-up, and turning errors into one clear line.

A CLI's ``main`` calls `run_main`, whose ``_main`` parses its flags and calls `setup_logging`
first. Library errors (`tlt.errors.TLTError`) become ``prog: error: <message>`` and their exit
code; anything else is a bug or an environment failure and becomes one line too::

    tlt-infer: error: unexpected MemoryError: ... (rerun with -v for the traceback)

With ``-v``/``--verbose`` (as recorded by `setup_logging`) or ``TLT_VERBOSE=1`` the traceback is
printed above that line, and TensorFlow's native start-up log stays visible; without them it is
kept off the terminal (see `tlt.cli._quiet`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Callable, Sequence

from tlt.cli import _quiet
from tlt.errors import DataError, TLTError

__all__ = ["HelpFormatter", "setup_logging", "run_main", "verbose_requested", "check_count"]

_LOG_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
VERBOSE_ENV = "TLT_VERBOSE"
_VERBOSE_FLAGS = ("-v", "--verbose", "--verbosity")
# Python loggers of TensorFlow and absl: their INFO/WARNING start-up chatter is noise without -v.
_THIRD_PARTY_LOGGERS = ("tensorflow", "absl")
_state: dict = {"verbose": None}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``-h`` shows every option's default, as TLT users expect; pass as ``formatter_class``.

    ``(default: X)`` is appended to an option's help unless the help already says what its default
    is (``"(default: $TLT_KEY)"``), the default is None (nothing given: the help says what happens),
    or the option is an on/off switch (``store_true``: off unless given).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default is None or isinstance(action.default, bool)
                or action.default is argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def check_count(flag: str, value: int | None) -> None:
    """Reject a count flag below 1 (``--top_k 0``, ``-b 0``) with one clear line; None passes.

    Raises:
        DataError: ``"<flag> must be >= 1, got <value>"``.
    """
    if value is not None and value < 1:
        raise DataError(f"{flag} must be >= 1, got {value}")


def _env_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def verbose_requested(argv: Sequence[str] | None = None) -> bool:
    """Whether the user asked for detail: what `setup_logging` recorded, else a guess from argv.

    The guess (``-v``, ``--verbose`` or ``--verbosity`` before any ``--``, or ``TLT_VERBOSE=1``)
    covers failures before the flags are parsed; once a CLI has called ``setup_logging`` its parsed
    flag decides (``tlt-pull -v`` is a version, not verbosity).
    """
    if _state["verbose"] is not None:
        return _state["verbose"]
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" in args:
        args = args[:args.index("--")]
    return _env_verbose() or any(arg in _VERBOSE_FLAGS for arg in args)


def setup_logging(verbose: bool = False) -> None:
    """Log in TLT's format to stderr; ``-v`` (or ``TLT_VERBOSE=1``) shows DEBUG lines.

    Without it, TensorFlow's native start-up noise (CUDA absent, CPU features, absl) and its
    Python loggers' chatter below ERROR stay off the terminal; call this before TensorFlow loads.
    """
    verbose = bool(verbose) or _env_verbose()
    _state["verbose"] = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=_LOG_FORMAT,
                        stream=sys.stderr, force=True)
    for name in _THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)
    if verbose:
        _quiet.restore()
    else:
        _quiet.quiet_tensorflow()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def run_main(prog: str, main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; every failure becomes one ``prog: error: ...`` line and an exit code.

    A `TLTError` prints its message and returns its exit code (SIGTERM raises
    `tlt.errors.Interrupted`: 143). Ctrl-C returns 130. Any other exception returns 1 with
    ``prog: error: unexpected <type>: <message> (rerun with -v for the traceback)``, and with
    ``-v`` the traceback above it. A closed output pipe returns 141 silently. argparse's own exits (``-h``, usage errors) pass through.
    Returns the process exit code (0 on success) instead of exiting, so tests can call it.
    """
    from tlt.signals import sigterm_raises

    _state["verbose"] = None
    if not verbose_requested(argv):
        _quiet.quiet_tensorflow()  # before anything imports TensorFlow, even ahead of setup_logging
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
    except BrokenPipeError:
        # The reader went away (`tlt-pipeline list | head`): stop quietly, as Unix tools do. Point
        # stdout at devnull so the interpreter's final flush does not raise a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - the last resort: one line instead of a traceback
        message = _one_line(exc)
        what = f"unexpected {type(exc).__name__}" + (f": {message}" if message else "")
        if verbose_requested(argv):
            traceback.print_exc(file=sys.stderr)
            print(f"{prog}: error: {what}", file=sys.stderr)
        else:
            print(f"{prog}: error: {what} (rerun with -v for the traceback)", file=sys.stderr)
        return 1
    finally:
        _quiet.restore()
