"""The ``pick_pruned`` stage: the prune sweep's fan-in component calls this.

Of the sweep's retrained models, keep the one with the fewest parameters whose accuracy / mAP is
within a tolerance of the best (`tlt.gates.sweep.pick_smallest`); copy it out with its record.
"""

from __future__ import annotations

__all__ = ["run"]


def run(candidates: list[str], pruned_models: list[str], out_dir: str, report_path: str, *,
        task: str, tolerance: float):
    """Pick among the sweep's evaluated models; write the chosen model and the sweep's page.

    Args:
        candidates: each iteration's evaluated retrained model folder.
        pruned_models: each iteration's prune output folder, in the same order.
        out_dir: receives the chosen model file and its ``metadata.json``.
        report_path: receives the Markdown page (reason and table).
        task: classification or detection (the metric).
        tolerance: allowed drop from the best metric, in points of %.

    Returns:
        ``(pick, metadata)``: the `tlt.gates.sweep.SweepPick` and the metadata written.
    """
    from tlt.gates.metrics import default_metric
    from tlt.gates.sweep import candidates_from_folders, pick_smallest, publish_pick
    from tlt.io.atomic import atomic_write_text

    metric = default_metric(task)
    table = candidates_from_folders(list(candidates), list(pruned_models), metric=metric)
    pick = pick_smallest(table, tolerance=float(tolerance))
    pruned = list(pruned_models)[list(candidates).index(pick.chosen.model)]
    meta = publish_pick(pick, pruned, out_dir, metric=metric)
    atomic_write_text(report_path, f"# Prune sweep ({metric} in %)\n\n{pick.to_markdown()}")
    return pick, meta
