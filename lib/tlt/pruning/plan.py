"""Which filters to keep: the prune settings and the per-group decision.

For every set of merged groups that is not blocked, each member layer's filter norms (and those
of the depthwise convolutions that follow the set, as in TLT) are normalised
(`criteria.normalize`), combined across layers (`criteria.equalize`), and the filters
scoring at least the threshold are kept. The count kept is then raised to at least
``min_num_filters`` and rounded up to a multiple of ``pruning_granularity`` (never beyond the
layer's width); when that adds filters, the highest-scoring ones are added first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from tlt.errors import SpecError
from tlt.pruning.criteria import (
    EQUALIZATION_CRITERIA,
    NORMALIZERS,
    equalize,
    filter_norms,
    normalize,
)
from tlt.pruning.graph import PRODUCERS, ChannelGraph, ChannelMap

__all__ = ["PruneSettings", "PrunePlan", "num_filters_to_keep", "select_filters",
           "build_prune_plan"]


@dataclass(frozen=True)
class PruneSettings:
    """The ``tlt-prune`` options, with the guide's defaults.

    Attributes:
        normalizer: ``max`` or ``L2`` (see `tlt.pruning.criteria`).
        equalization_criterion: ``union``, ``intersection``, ``arithmetic_mean`` or
            ``geometric_mean``.
        pruning_granularity: kept filter counts are multiples of this (>= 1).
        pruning_threshold: filters whose normalised norm is below it are removed; in (0, 1].
        min_num_filters: each layer keeps at least this many filters (>= 1).
        excluded_layers: layers whose output filters are all kept, with their whole group.
    """

    normalizer: str = "max"
    equalization_criterion: str = "union"
    pruning_granularity: int = 8
    pruning_threshold: float = 0.1
    min_num_filters: int = 16
    excluded_layers: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> None:
        """Check every option.

        Raises:
            SpecError: an option is out of range, naming the flag and the value given.
        """
        if self.normalizer not in NORMALIZERS:
            _bad("normalizer", f"must be one of {', '.join(NORMALIZERS)}, got "
                               f"{self.normalizer!r}")
        if self.equalization_criterion not in EQUALIZATION_CRITERIA:
            _bad("equalization_criterion", f"must be one of {', '.join(EQUALIZATION_CRITERIA)}"
                                           f", got {self.equalization_criterion!r}")
        if not 0.0 < float(self.pruning_threshold) <= 1.0:
            _bad("pruning_threshold", f"must be in (0, 1], got {self.pruning_threshold:g}")
        if int(self.pruning_granularity) < 1:
            _bad("pruning_granularity", f"must be >= 1, got {self.pruning_granularity}")
        if int(self.min_num_filters) < 1:
            _bad("min_num_filters", f"must be >= 1, got {self.min_num_filters}")

    def to_dict(self) -> dict:
        """The settings as JSON-ready values (stored in the pruned model's metadata)."""
        data = asdict(self)
        data["excluded_layers"] = list(self.excluded_layers)
        return data


def _bad(option: str, detail: str) -> None:
    raise SpecError(f"--{option} {detail}", field=option)


@dataclass
class PrunePlan:
    """The filters each merged set keeps.

    Attributes:
        kept: root group id -> sorted indices of the filters kept.
        sizes: root group id -> the original number of filters.
        blocked: root group id -> why it is kept whole (blocked sets only).
    """

    kept: dict[int, np.ndarray]
    sizes: dict[int, int]
    blocked: dict[int, str]

    def keep_mask(self, graph: ChannelGraph, channel_map: ChannelMap) -> np.ndarray:
        """Boolean mask over a tensor's channels: True where the channel survives."""
        mask = np.ones(len(channel_map), dtype=bool)
        for gid in channel_map.groups():
            at = channel_map.gid == gid
            mask[at] = np.isin(channel_map.idx[at], self.kept[graph.find(gid)])
        return mask

    def width(self, graph: ChannelGraph, layer: str) -> int:
        """The pruned number of filters of producer ``layer``."""
        return len(self.kept[graph.find(graph.producer_group[layer])])


def num_filters_to_keep(num_filters: int, num_above: int, granularity: int,
                        min_num_filters: int) -> int:
    """How many filters a layer keeps.

    Args:
        num_filters: the layer's width.
        num_above: how many score at least the threshold.
        granularity: round the count up to a multiple of this.
        min_num_filters: keep at least this many.

    Returns:
        The count, between 1 and ``num_filters``.
    """
    count = max(num_above, min_num_filters, 1)
    count = int(math.ceil(count / granularity) * granularity)
    return min(count, num_filters)


def select_filters(scores: np.ndarray, settings: PruneSettings) -> np.ndarray:
    """Sorted indices of the filters kept, given one score per filter."""
    scores = np.asarray(scores)
    count = num_filters_to_keep(len(scores), int((scores >= settings.pruning_threshold).sum()),
                                int(settings.pruning_granularity), int(settings.min_num_filters))
    # Highest scores first; a stable sort keeps the lower index on ties, so plans are repeatable.
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:count])


def _layer_scores(model, graph: ChannelGraph, name: str, normalizer: str) -> np.ndarray:
    """Normalised filter norms of a producer, or of a depthwise layer per input channel."""
    import keras

    kind = graph.classes[name]
    out_axis = 2 if kind == "DepthwiseConv2D" else PRODUCERS[kind][1]
    kernel = keras.ops.convert_to_numpy(model.get_layer(name).kernel)
    return normalize(filter_norms(kernel, out_axis), normalizer)


def _depthwise_voters(graph: ChannelGraph) -> dict[int, list[str]]:
    """Depthwise layers reading one whole group, by that group's root.

    As in TLT, a depthwise convolution's per-channel kernel norms take part in the equalization
    of the group it follows: under ``intersection`` a channel whose depthwise filter is weak goes
    even when the filter producing it is strong.
    """
    voters: dict[int, list[str]] = {}
    for name in graph.order:
        if graph.classes[name] == "DepthwiseConv2D" and name not in graph.opaque:
            gid = graph.in_maps[name][0].single_group()
            if gid is not None:
                voters.setdefault(graph.find(gid), []).append(name)
    return voters


def build_prune_plan(model, graph: ChannelGraph, settings: PruneSettings) -> PrunePlan:
    """Decide the filters every merged set of groups keeps.

    Args:
        model: the model `graph` was built from (its kernels give the norms).
        graph: its channel graph.
        settings: validated prune settings.

    Returns:
        The plan: blocked sets keep every filter.
    """
    kept, sizes, blocked = {}, {}, {}
    depthwise = _depthwise_voters(graph)
    for root in graph.roots():
        members = graph.members(root)
        sizes[root] = members[0].size
        reason = graph.blocked_reason(root)
        if reason is not None:
            blocked[root] = reason
            kept[root] = np.arange(sizes[root])
            continue
        names = [g.layer for g in members] + depthwise.get(root, [])
        scores = [_layer_scores(model, graph, name, settings.normalizer) for name in names]
        merged = equalize(scores, settings.equalization_criterion) if len(scores) > 1 else scores[0]
        kept[root] = select_filters(merged, settings)
    return PrunePlan(kept=kept, sizes=sizes, blocked=blocked)
