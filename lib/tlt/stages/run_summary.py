"""The ``run_summary`` stage: the full DAGs' exit task calls this, whether the run succeeded or not.

Write the run's summary (`tlt.gates.run_summary`): state, the failed steps and their error lines,
notes; as summary.json, summary.md and summary.html.
"""

from __future__ import annotations

__all__ = ["run"]


def run(out_dir: str, pipeline: str, *, state: str = "", error: str = "", run_id: str = "",
        failures: str = "", notes: str = "") -> dict:
    """Write the summary files into ``out_dir``.

    Args:
        out_dir: the output folder.
        pipeline: the pipeline's name.
        state: the run's final state; empty derives it from the failed steps.
        error: the run's error message.
        run_id: the run's id.
        failures: Argo's ``workflow.failures`` JSON (the failed steps); empty for none.
        notes: lines shown under the verdict, one per line.

    Returns:
        The summary written (as in ``summary.json``).
    """
    from tlt.gates.run_summary import task_statuses_from_argo_failures, write_run_summary

    return write_run_summary(out_dir, pipeline, task_statuses_from_argo_failures(failures),
                             run_id=run_id or None, final_state=state or None, error=error or None,
                             notes=[line for line in notes.splitlines() if line.strip()])
