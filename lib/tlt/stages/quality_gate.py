"""The ``quality_gate`` stage: the full DAGs' gate component calls this.

Hold an evaluated model's accuracy / mAP against a threshold (`tlt.gates.quality_gate`) and write
the verdict as a Markdown page; the pipeline runs export and the engine builds only when it passed.
"""

from __future__ import annotations

__all__ = ["run"]


def run(model_dir: str, report_path: str, *, task: str, threshold: float, metric: str = ""):
    """Gate the model in ``model_dir`` and write the report to ``report_path``.

    Returns:
        The `tlt.gates.report.GateReport` (``passed``, the check's reason, ``details``).
    """
    from tlt.gates.quality_gate import gate_markdown, gate_model_folder
    from tlt.io.atomic import atomic_write_text

    report = gate_model_folder(model_dir, task=task, threshold=threshold, metric=metric)
    atomic_write_text(report_path, gate_markdown(report))
    return report
