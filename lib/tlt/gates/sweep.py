"""Pick a prune-sweep candidate: the smallest model within a tolerance of the best metric.

A sweep prunes the same model at several thresholds (``dsl.ParallelFor``), retrains and evaluates
each, and fans in with ``dsl.Collected``. What arrives is loosely typed (Collected lists come as
floats or strings, a list may come as JSON text), so `parse_candidates` and
`candidates_from_columns` accept numbers, numeric strings and JSON and check every field.

The pick: among candidates whose metric is at least ``best - tolerance`` (absolute), the one
with the fewest parameters; ties go to the smaller file, then the higher metric, then the lower
threshold, so the same table always gives the same pick.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from tlt.errors import PipelineError, SpecError
from tlt.gates.metrics import to_number
from tlt.gates.report import format_value

__all__ = ["SweepCandidate", "SweepPick", "parse_candidates", "candidates_from_columns",
           "pick_smallest", "candidates_from_folders", "publish_pick"]

_EPS = 1e-9


@dataclass(frozen=True)
class SweepCandidate:
    """One pruned-and-retrained model of the sweep.

    Attributes:
        threshold: the pruning threshold (``-pth``) it was made with.
        params: its parameter count.
        metric: its accuracy or mAP on the validation set (higher is better).
        size: its file size in bytes, when known.
        model: where it is (URI or path), when known.
    """

    threshold: float
    params: int
    metric: float
    size: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class SweepPick:
    """The chosen candidate, the best one, and why.

    Attributes:
        chosen: the smallest candidate within the tolerance.
        best: the candidate with the highest metric.
        tolerance: the allowed metric drop from the best.
        reason: one line naming both and the numbers.
        candidates: every candidate, by threshold.
    """

    chosen: SweepCandidate
    best: SweepCandidate
    tolerance: float
    reason: str
    candidates: list[SweepCandidate]

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)

    def to_json(self) -> str:
        """`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_markdown(self) -> str:
        """The reason and the sweep table (the chosen row marked)."""
        lines = [f"**{self.reason}**", "", "| threshold | params | size | metric | chosen |",
                 "|---|---|---|---|---|"]
        for c in self.candidates:
            size = "" if c.size is None else f"{c.size:,}"
            lines.append(f"| {c.threshold:g} | {c.params:,} | {size} | {format_value(c.metric)} "
                         f"| {'yes' if c == self.chosen else ''} |")
        return "\n".join(lines) + "\n"


def _loads(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise PipelineError(f"sweep input {value[:60]!r} is not JSON") from None
    return value


def _count(value: Any, what: str) -> int:
    number = to_number(value, what)
    if number < 0 or number != int(number):
        raise PipelineError(f"{what} is {value!r}, expected a whole number >= 0")
    return int(number)


def _candidate(raw: Any, index: int, metric_key: str) -> SweepCandidate:
    raw = _loads(raw)
    what = f"sweep candidate {index}"
    if not isinstance(raw, Mapping):
        raise PipelineError(f"{what} is {raw!r}, expected an object with threshold, params, "
                            f"{metric_key}")
    for key in ("threshold", "params", metric_key):
        if raw.get(key) is None:
            found = ", ".join(sorted(str(k) for k in raw)) or "nothing"
            raise PipelineError(f"{what} has no {key!r} (found: {found})")
    size = raw.get("size")
    model = raw.get("model")
    return SweepCandidate(to_number(raw["threshold"], f"{what} threshold"),
                          _count(raw["params"], f"{what} params"),
                          to_number(raw[metric_key], f"{what} {metric_key}"),
                          None if size is None else _count(size, f"{what} size"),
                          None if model is None else str(model))


def parse_candidates(candidates: Iterable[Any] | str, *,
                     metric_key: str = "metric") -> list[SweepCandidate]:
    """Candidates from a list of dicts (or of their JSON texts), or the JSON text of that list.

    Args:
        candidates: each ``{"threshold", "params", "metric", "size"?, "model"?}``.
        metric_key: the key holding the metric (``metric``, ``accuracy``, ``mAP``).

    Raises:
        PipelineError: not a list, or a candidate missing a field or holding a non-number,
            named by its index.
    """
    items = _loads(candidates)
    if isinstance(items, Mapping) or not isinstance(items, Iterable):
        raise PipelineError(f"sweep candidates are {items!r}, expected a list")
    return [_candidate(raw, i, metric_key) for i, raw in enumerate(items)]


def candidates_from_columns(thresholds: Any, params: Any, metrics: Any, sizes: Any = None,
                            models: Any = None) -> list[SweepCandidate]:
    """Candidates from parallel lists, as ``dsl.Collected`` outputs deliver them.

    Each argument is a list (or its JSON text) of numbers or numeric strings, one per candidate
    in the same order; ``sizes`` and ``models`` may be None.

    Raises:
        PipelineError: lists of different lengths, or a value that is not a number.
    """
    columns = {"threshold": _loads(thresholds), "params": _loads(params),
               "metric": _loads(metrics), "size": _loads(sizes), "model": _loads(models)}
    given = {k: v for k, v in columns.items() if v is not None}
    for name, column in given.items():
        if not isinstance(column, list):
            raise PipelineError(f"sweep {name} column is {column!r}, expected a list")
    lengths = {name: len(column) for name, column in given.items()}
    if len(set(lengths.values())) > 1:
        raise PipelineError("sweep columns differ in length: " +
                            ", ".join(f"{k} {n}" for k, n in lengths.items()))
    rows = [dict(zip(given, values)) for values in zip(*given.values())]
    return parse_candidates(rows)


def pick_smallest(candidates: Iterable[SweepCandidate | Mapping | str] | str, *,
                  tolerance: float = 0.01) -> SweepPick:
    """The candidate with the fewest parameters whose metric is within ``tolerance`` of the best.

    Args:
        candidates: `SweepCandidate` objects, or anything `parse_candidates` accepts.
        tolerance: the allowed drop from the best metric (absolute, >= 0).

    Raises:
        SpecError: a negative or non-numeric tolerance.
        PipelineError: no candidates, or malformed ones.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not tolerance >= 0:
        raise SpecError(f"sweep tolerance must be a number >= 0, got {tolerance!r}",
                        field="tolerance")
    items = list(candidates) if not isinstance(candidates, str) else candidates
    table = items if items and all(isinstance(c, SweepCandidate) for c in items) \
        else parse_candidates(items)
    if not table:
        raise PipelineError("the prune sweep has no candidates to pick from")
    best = max(table, key=lambda c: (c.metric, -c.params, -c.threshold))
    within = [c for c in table if c.metric >= best.metric - tolerance - _EPS]
    chosen = min(within, key=lambda c: (c.params, c.size if c.size is not None else 0,
                                        -c.metric, c.threshold))
    return SweepPick(chosen, best, float(tolerance), _reason(chosen, best, tolerance),
                     sorted(table, key=lambda c: c.threshold))


def _reason(chosen: SweepCandidate, best: SweepCandidate, tolerance: float) -> str:
    fmt = format_value
    if chosen == best:
        return (f"threshold {chosen.threshold:g} kept: the best metric {fmt(best.metric)} with "
                f"{chosen.params:,} params; no smaller model within {fmt(float(tolerance))}")
    saved = 1 - chosen.params / best.params if best.params else 0.0
    return (f"threshold {chosen.threshold:g} kept: {chosen.params:,} params ({saved:.0%} fewer "
            f"than the best, threshold {best.threshold:g}), metric {fmt(chosen.metric)} within "
            f"{fmt(float(tolerance))} of the best {fmt(best.metric)}")


def candidates_from_folders(candidates: list[str], pruned_models: list[str], *,
                            metric: str) -> list[SweepCandidate]:
    """Candidates from the artifact folders of a sweep's iterations.

    Args:
        candidates: each iteration's evaluated retrained model (evaluate's ``scored_model``:
            ``metadata.json`` with ``params``, ``size_bytes`` and the metric in %).
        pruned_models: each iteration's prune output, in the same order (``metadata.json`` with
            ``settings.pruning_threshold``).
        metric: the metric's key (``accuracy`` or ``mAP``).

    Raises:
        PipelineError: lists of different lengths, a folder without metadata, a missing field.
    """
    from tlt.artifacts import read_metadata

    if len(candidates) != len(pruned_models):
        raise PipelineError(f"prune sweep: {len(candidates)} evaluated candidates but "
                            f"{len(pruned_models)} pruned models; expected one of each per threshold")
    rows = []
    for index, (evaluated, pruned) in enumerate(zip(candidates, pruned_models)):
        meta, prune_meta = read_metadata(evaluated), read_metadata(pruned)
        if not meta or not prune_meta:
            missing = evaluated if not meta else pruned
            raise PipelineError(f"sweep candidate {index}: {missing} has no metadata.json")
        rows.append({"threshold": (prune_meta.get("settings") or {}).get("pruning_threshold"),
                     "params": meta.get("params"), metric: meta.get(metric),
                     "size": meta.get("size_bytes"), "model": evaluated})
    return parse_candidates(rows, metric_key=metric)


def publish_pick(pick: SweepPick, pruned_model: str, out_dir: str | Path, *,
                 metric: str) -> dict[str, Any]:
    """Copy the chosen model file into ``out_dir`` with a ``metadata.json`` describing it.

    The metadata carries the metric in %, the parameter count and size, the chosen prune
    output's pruning record (``params_before``, ``params_after``, ``pruning_ratio``,
    ``settings``) and the whole sweep, so later stages and the run summary read it as they read
    a retrained model.

    Args:
        pick: `pick_smallest`'s result over `candidates_from_folders` (``model`` = folders).
        pruned_model: the chosen candidate's prune output folder.
        out_dir: the output folder.
        metric: the metric's key.

    Returns:
        The metadata written.
    """
    import shutil

    from tlt.artifacts import read_metadata, write_metadata

    chosen_meta = read_metadata(pick.chosen.model)
    source = Path(pick.chosen.model) / str(chosen_meta.get("model", ""))
    if not chosen_meta.get("model") or not source.is_file():
        raise PipelineError(f"sweep candidate {pick.chosen.model}: its metadata.json names no model "
                            "file in the folder")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out / source.name)
    pruning = read_metadata(pruned_model)
    fields = {"model": source.name, "task": chosen_meta.get("task"),
              metric: pick.chosen.metric, "params": pick.chosen.params,
              "size_bytes": pick.chosen.size, "pruning_threshold": pick.chosen.threshold,
              **{k: pruning[k] for k in ("params_before", "params_after", "pruning_ratio",
                                         "settings") if k in pruning},
              "sweep": {"reason": pick.reason, "tolerance": pick.tolerance,
                        "candidates": [asdict(c) for c in pick.candidates]}}
    fields = {k: v for k, v in fields.items() if v is not None}
    return write_metadata(out, "pick_pruned", parents=[{"uri": str(source)}], **fields)
