"""status.json: a small, atomically rewritten progress file that a UI or a pipeline can follow."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tlt.io.atomic import atomic_write_text

__all__ = ["StatusWriter"]


class StatusWriter:
    """Keeps ``<out_dir>/status.json`` up to date.

    The file always holds a complete JSON object: ``stage``, ``state`` (``running``, ``done``,
    ``failed`` or ``interrupted``), ``started``/``updated`` Unix times and whatever fields the stage reports
    (epoch, step, progress fraction, message ...).
    """

    def __init__(self, out_dir: str | Path, stage: str):
        self.path = Path(out_dir) / "status.json"
        self._status: dict[str, Any] = {"stage": stage, "state": "running", "started": time.time()}
        self.update()

    def update(self, **fields: Any) -> None:
        """Merge ``fields`` into the status and rewrite the file."""
        self._status.update(fields)
        self._status["updated"] = time.time()
        atomic_write_text(self.path, json.dumps(self._status, indent=2, sort_keys=True) + "\n")

    def done(self, **fields: Any) -> None:
        """Mark the stage finished successfully."""
        self.update(state="done", **fields)

    def failed(self, message: str) -> None:
        """Mark the stage failed with a one-line reason."""
        self.update(state="failed", message=message)

    def interrupted(self, message: str) -> None:
        """Mark the stage stopped by a signal; a rerun resumes it."""
        self.update(state="interrupted", message=message)

    def finish_with(self, error: BaseException) -> None:
        """Record why the stage ended early: ``interrupted`` for a signal, else ``failed``."""
        from tlt.errors import Interrupted

        if isinstance(error, (Interrupted, KeyboardInterrupt)):
            self.interrupted(str(error) or type(error).__name__)
        else:
            self.failed(str(error) or type(error).__name__)
