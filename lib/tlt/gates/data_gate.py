"""The data gate: check new training data before a scheduled retraining trains on it.

Checks (each a `tlt.gates.report.Check`, thresholds in `DataGateConfig`):

- ``malformed_label_rate`` (detection): label lines `tlt.data.kitti` rejects / all label lines.
- ``unreadable_image_rate``: images whose header or end marker cannot be read / all images.
- ``missing_classes``: classes of the champion's training data with no object (image) here.
- ``new_classes``: classes here that the champion's training data never had.
- ``balance_shift``: total variation distance between the two class distributions,
  ``TVD(p, q) = 1/2 * sum_c |p_c - q_c|`` over the union of classes (a missing or new class
  counts with share 0 on the other side). It is the share of objects that would have to change
  class to turn one distribution into the other: 0 = same balance, 1 = no class in common.

The champion's class counts come from its lineage (`class_counts_from_lineage`): convert's
``metadata.json`` records ``class_counts`` per fold and in ``total``. Without them (first run)
the three class checks pass and say they were skipped. A gate that fails raises nothing;
`tlt.gates.report.require` does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

from tlt.data.kitti import DONT_CARE
from tlt.errors import DataError, SpecError, StorageError
from tlt.gates.data_profile import DataProfile, profile_image_folders, profile_kitti
from tlt.gates.report import Check, GateReport, format_value
from tlt.io import storage

__all__ = ["DataGateConfig", "balance_shift", "class_counts_from_lineage", "evaluate_data",
           "check_detection_data", "check_classification_data"]

# Shares are sums of float quotients: a shift of exactly the limit must not fail by rounding.
_EPS = 1e-9
_NO_REFERENCE = "no champion class counts to compare (first run or no lineage): skipped"


@dataclass(frozen=True)
class DataGateConfig:
    """Thresholds of the data gate (every rate and shift is a fraction in [0, 1]).

    Attributes:
        max_malformed_rate: highest accepted share of malformed label lines.
        max_unreadable_rate: highest accepted share of unreadable images.
        max_balance_shift: highest accepted total variation distance between class shares.
        allow_missing_classes: pass although a champion class has no object in the new data.
        allow_new_classes: pass although the new data has classes the champion never saw.
        ignore_classes: classes left out of the class checks (KITTI's DontCare regions).
    """

    max_malformed_rate: float = 0.05
    max_unreadable_rate: float = 0.05
    max_balance_shift: float = 0.2
    allow_missing_classes: bool = False
    allow_new_classes: bool = False
    ignore_classes: tuple[str, ...] = (DONT_CARE,)

    def __post_init__(self) -> None:
        # a list from a pipeline parameter or JSON becomes the tuple the dataclass promises
        object.__setattr__(self, "ignore_classes", tuple(str(c) for c in self.ignore_classes))
        for name in ("max_malformed_rate", "max_unreadable_rate", "max_balance_shift"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise SpecError(f"data gate {name} must be a number in [0, 1], got {value!r}",
                                field=name)


def balance_shift(reference: Mapping[str, int], new: Mapping[str, int]) -> float:
    """Total variation distance between the class shares of two count tables.

    Args:
        reference: objects (or images) per class of the champion's training data.
        new: objects per class of the new data.

    Returns:
        ``1/2 * sum |p_c - q_c|`` in [0, 1]; 1.0 when either side has no object at all.
    """
    total_p, total_q = sum(reference.values()), sum(new.values())
    if total_p <= 0 or total_q <= 0:
        return 1.0
    classes = set(reference) | set(new)
    return 0.5 * sum(abs(reference.get(c, 0) / total_p - new.get(c, 0) / total_q)
                     for c in classes)


def class_counts_from_lineage(metadata: Mapping[str, Any], *, follow_uris: bool = False,
                              max_depth: int = 4) -> dict[str, int] | None:
    """The class counts of the data a model was trained on, from its lineage metadata.

    Looked up in order: ``class_counts`` (convert's ``{"fold-000": ..., "total": {...}}``: the
    total, or the sum of the folds; or a flat ``{class: n}``), ``training_data``, then every
    entry of ``parents`` (and its ``metadata``). With ``follow_uris``, a parent's ``uri`` is
    followed to the ``metadata.json`` of its folder (or of a shard pattern's folder, as training
    records them), local or remote.

    Args:
        metadata: an artifact's metadata.json or a registry version's metadata.
        follow_uris: read parents' metadata.json files through `tlt.io.storage`.
        max_depth: how many lineage hops to follow at most.

    Returns:
        ``{class: count}``, or None when the lineage records no counts.

    Raises:
        DataError: recorded counts that are not non-negative integers, named by class.
    """
    if not isinstance(metadata, Mapping) or max_depth < 0:
        return None
    if isinstance(metadata.get("class_counts"), Mapping):
        return _counts(metadata["class_counts"])
    nested = [metadata.get("training_data")]
    for parent in metadata.get("parents") or []:
        if isinstance(parent, Mapping):
            nested += [parent, parent.get("metadata")]
            if follow_uris and isinstance(parent.get("uri"), str):
                nested.append(_metadata_near(parent["uri"]))
    for meta in nested:
        found = class_counts_from_lineage(meta, follow_uris=follow_uris,
                                          max_depth=max_depth - 1) if meta else None
        if found is not None:
            return found
    return None


def _counts(raw: Mapping[str, Any]) -> dict[str, int]:
    if isinstance(raw.get("total"), Mapping):
        return _checked(raw["total"])
    if raw and all(isinstance(v, Mapping) for v in raw.values()):  # folds only: add them up
        summed: dict[str, int] = {}
        for fold in raw.values():
            for name, n in _checked(fold).items():
                summed[name] = summed.get(name, 0) + n
        return summed
    return _checked(raw)


def _checked(raw: Mapping[str, Any]) -> dict[str, int]:
    out = {}
    for name, n in raw.items():
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not n >= 0 or n != int(n):
            raise DataError(f"lineage class_counts[{name!r}] is {n!r}, expected a count >= 0")
        out[str(name)] = int(n)
    return out


def _metadata_near(uri: str) -> dict | None:
    """metadata.json of the folder ``uri`` names (a folder, or a file pattern in one)."""
    path = uri.split(" (", 1)[0].rstrip("/")  # training appends " (all but fold 0)"
    folders = [path] + ([path.rsplit("/", 1)[0]] if "/" in path else [])
    for folder in folders:
        meta_uri = storage.join(folder, "metadata.json")
        try:
            if storage.exists(meta_uri):
                return json.loads(storage.read_text(meta_uri))
        except (ValueError, OSError, StorageError):
            continue
    return None


def _rate_check(name: str, what: str, bad: int, total: int, limit: float, unit: str) -> Check:
    rate = bad / total if total else 0.0
    ok = rate <= limit + _EPS
    return Check(name, rate, limit, ok,
                 f"{what} {rate:.1%} ({bad} of {total} {unit}) {'<=' if ok else '>'} "
                 f"max {limit:.1%}")


def _class_checks(reference: dict[str, int] | None, new: dict[str, int],
                  config: DataGateConfig) -> list[Check]:
    if reference is None or sum(reference.values()) == 0:
        return [Check(n, None, t, True, _NO_REFERENCE) for n, t in (
            ("missing_classes", "none"), ("new_classes", "none"),
            ("balance_shift", config.max_balance_shift))]
    missing = sorted(c for c, n in reference.items() if n > 0 and new.get(c, 0) == 0)
    added = sorted(c for c, n in new.items() if n > 0 and reference.get(c, 0) == 0)
    shift = balance_shift(reference, new)
    shift_ok = shift <= config.max_balance_shift + _EPS
    return [
        Check("missing_classes", missing, "allowed" if config.allow_missing_classes else "none",
              not missing or config.allow_missing_classes,
              f"classes missing versus the champion's training data: {', '.join(missing)}"
              if missing else "every class of the champion's training data is present"),
        Check("new_classes", added, "allowed" if config.allow_new_classes else "none",
              not added or config.allow_new_classes,
              f"classes not in the champion's training data: {', '.join(added)}"
              if added else "no class the champion's training data lacks"),
        Check("balance_shift", shift, config.max_balance_shift, shift_ok,
              f"class-balance shift (total variation distance) {format_value(shift)} "
              f"{'<=' if shift_ok else '>'} max "
              f"{format_value(float(config.max_balance_shift))}"),
    ]


def _class_table(counts: Mapping[str, int], lower: bool, ignore: tuple[str, ...]) -> dict:
    table: dict[str, int] = {}
    for name, n in counts.items():
        key = name.lower() if lower else name
        if key not in ignore:
            table[key] = table.get(key, 0) + int(n)
    return dict(sorted(table.items()))


def evaluate_data(profile: DataProfile, reference_counts: Mapping[str, int] | None,
                  config: DataGateConfig | None = None) -> GateReport:
    """Run the data gate's checks on a profiled data set.

    Args:
        profile: what `profile_kitti` / `profile_image_folders` counted.
        reference_counts: the champion's training class counts (None: first run).
        config: thresholds; defaults when None.

    Returns:
        A ``data`` `GateReport`; ``details`` holds both class tables and the first problems.
    """
    config = config or DataGateConfig()
    lower = profile.kind == "detection"  # KITTI class names are case-insensitive
    ignore = tuple(c.lower() for c in config.ignore_classes) if lower else config.ignore_classes
    new = _class_table(profile.class_counts, lower, ignore)
    ref = None if reference_counts is None else _class_table(reference_counts, lower, ignore)
    checks = []
    if profile.kind == "detection":
        checks.append(_rate_check("malformed_label_rate", "malformed-label rate",
                                  profile.malformed_labels, profile.num_labels,
                                  config.max_malformed_rate, "label lines"))
    checks.append(_rate_check("unreadable_image_rate", "unreadable-image rate",
                              profile.unreadable_images, profile.num_frames,
                              config.max_unreadable_rate, "images"))
    checks += _class_checks(ref, new, config)
    details = {"source": profile.source, "kind": profile.kind, "num_frames": profile.num_frames,
               "num_labels": profile.num_labels, "malformed_labels": profile.malformed_labels,
               "unreadable_images": profile.unreadable_images, "class_counts": new,
               "reference_class_counts": ref, "unpaired": profile.unpaired,
               "problems": profile.problems[:10]}
    return GateReport("data", checks, details)


def check_detection_data(root: str | os.PathLike,
                         reference_counts: Mapping[str, int] | None = None, *,
                         image_dir: str = "images", label_dir: str = "labels",
                         image_extension: str = ".png",
                         config: DataGateConfig | None = None) -> GateReport:
    """Profile a KITTI data set (local or gs:// / s3://) and run the data gate on it.

    Raises:
        DataError: the root holds no frames (one line naming the folder).
    """
    profile = profile_kitti(root, image_dir=image_dir, label_dir=label_dir,
                            image_extension=image_extension)
    return evaluate_data(profile, reference_counts, config)


def check_classification_data(root: str | os.PathLike,
                              reference_counts: Mapping[str, int] | None = None, *,
                              config: DataGateConfig | None = None) -> GateReport:
    """Profile a folder-per-class data set (local or gs:// / s3://) and run the data gate on it.

    Raises:
        DataError: the root holds no image in any class folder (one line).
    """
    return evaluate_data(profile_image_folders(root), reference_counts, config)
