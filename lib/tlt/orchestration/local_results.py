"""What a local run produced, as the terminal summary and callers read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LocalArtifact", "LocalRunResult", "StepResult", "format_seconds"]


@dataclass
class LocalArtifact:
    """One output artifact of a local run: its folder and the metadata KFP recorded for it.

    Attributes:
        page: for an HTML output, a copy named ``<run>/<name>.html`` that a browser opens.
    """

    name: str
    kind: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    page: Path | None = None


@dataclass
class StepResult:
    """One task of a local run as the terminal summary shows it.

    Attributes:
        name: the task (= stage) name.
        status: ``succeeded``, ``cached`` (reused from an earlier run), ``failed``, ``skipped`` (inside a ``dsl.If`` whose condition was
            false, e.g. export after a failed quality gate) or ``not run`` (after a failure).
        seconds: wall time, None when it did not run.
        error: a failed task's one-line error (the full traceback is in the run's log).
    """

    name: str
    status: str
    seconds: float | None = None
    error: str | None = None


@dataclass
class LocalRunResult:
    """What a local run produced.

    Attributes:
        pipeline: catalogue name.
        run_dir: the run's folder under the pipeline root (one subfolder per task).
        log_file: every task's output (what kfp.local printed, without colour codes).
        outputs: the pipeline's output artifacts by name.
        steps: every task in the order it ran, then those that did not run.
        seconds: wall time of the whole run.
    """

    pipeline: str
    run_dir: Path
    log_file: Path
    outputs: dict[str, LocalArtifact]
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0


def format_seconds(seconds: float) -> str:
    """``4 s``, ``6 min 05 s``: a duration as a person reads it."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"
