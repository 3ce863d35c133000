"""Turn SIGTERM into an exception so long stages stop cleanly and can resume.

Kubernetes sends SIGTERM on eviction and ``timeout`` sends it by default. Python's default action
kills the process at once, skipping ``finally`` blocks; with `sigterm_raises` the main thread gets
a `tlt.errors.Interrupted` instead, which unwinds like any error: temporary files are removed,
``status.json`` says ``interrupted`` and the CLI exits with 143.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from tlt.errors import Interrupted

__all__ = ["sigterm_raises"]


def _raise_interrupted(signum, _frame) -> None:
    # Restore the default first: a second SIGTERM during clean-up ends the process at once.
    signal.signal(signum, signal.SIG_DFL)
    raise Interrupted(f"stopped by {signal.Signals(signum).name}; rerun the same command to resume")


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises `Interrupted` in the main thread.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
