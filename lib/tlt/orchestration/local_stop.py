"""Stopping a local pipeline run with SIGTERM stops the task it is running, too.

kfp.local runs each task as a child process (``sh -ec ...``, which starts the stage's Python) in the
run's process group. ``kill <pid>`` of ``tlt-pipeline run --local`` reaches only that parent: with
`tlt.signals.sigterm_raises` it then waits for the task to end (kfp.local's ``Popen`` waits on exit),
so a training task went on to its last epoch, and without it the task was orphaned and kept writing
into the run's folder while a resumed run started on it. `sigterm_stops_tasks` passes SIGTERM on to
every process the run started; each stage door turns it into `tlt.errors.Interrupted` (its
checkpoint kept, ``status.json`` ``interrupted``), and the run raises `Interrupted` itself.

Only the run's own descendants are signalled (found in ``/proc``), never its process group, which
may hold the shell or test runner that started it. Where ``/proc`` has no child lists (not Linux),
the tasks are not signalled and the run ends when its task does, as before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Iterator

from tlt.errors import Interrupted

__all__ = ["descendants", "sigterm_stops_tasks"]


def descendants(pid: int) -> list[int]:
    """Children, grandchildren ... of process ``pid``, parents before their children.

    Read from ``/proc/<pid>/task/<tid>/children`` (Linux); empty where that is not available or a
    process ended meanwhile.
    """
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop(0)
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(word) for word in children.read_text().split()]
            except OSError:  # the thread or process ended while we looked
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


@contextlib.contextmanager
def sigterm_stops_tasks(resume_hint: str = "") -> Iterator[None]:
    """Within the block, SIGTERM is passed on to every descendant, then raises `Interrupted`.

    Args:
        resume_hint: appended to the error message (e.g. the ``--resume RUN_DIR`` to go on with).

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _stop(signum, _frame) -> None:
        # A second SIGTERM during clean-up ends the run at once, as with tlt.signals.
        signal.signal(signum, signal.SIG_DFL)
        for pid in descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        raise Interrupted(f"stopped by SIGTERM{resume_hint}")

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
