"""The ``evaluate`` stage: ``tlt-evaluate <task>`` and the evaluate component call this."""

from __future__ import annotations

__all__ = ["run_classification"]


def run_classification(model: str, data_dir: str, *, key: str | None = None, batch_size: int = 32,
                       top_k: int = 5, results_json: str | None = None):
    """Evaluate a classification model on a folder-per-class data set (see
    `tlt.evaluation.classification.evaluate_classification`)."""
    from tlt.evaluation.classification import evaluate_classification

    return evaluate_classification(model, data_dir, key=key, batch_size=batch_size, top_k=top_k,
                                   results_json=results_json)
