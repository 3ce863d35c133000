"""Filter pruning of functional Keras models (``tlt-prune``, guide chapter 8).

    graph = build_channel_graph(model, excluded)   # channel groups, merged at element-wise ops
    plan = build_prune_plan(model, graph, settings) # filters kept per group (norms, threshold)
    pruned = rebuild_pruned(model, graph, plan)    # narrower config + sliced weights

`prune_model` runs the three steps. The result is an ordinary functional model with TLT's layer
names and fewer filters: save it with `tlt.io.modelfile.save_keras_model` and load it back with
`tlt.io.modelfile.load_keras_model` to retrain it as it is (never rebuilt from model_config);
`is_pruned` and `check_retrain_compatible` (`tlt.pruning.retrain`) tell retraining what it has.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field

from tlt.errors import SpecError
from tlt.pruning.criteria import EQUALIZATION_CRITERIA, NORMALIZERS
from tlt.pruning.graph import ChannelGraph, build_channel_graph
from tlt.pruning.plan import PrunePlan, PruneSettings, build_prune_plan
from tlt.pruning.retrain import check_retrain_compatible, is_pruned
from tlt.pruning.surgery import rebuild_pruned

__all__ = [
    "NORMALIZERS",
    "EQUALIZATION_CRITERIA",
    "PruneSettings",
    "PruneResult",
    "ChannelGraph",
    "PrunePlan",
    "build_channel_graph",
    "build_prune_plan",
    "rebuild_pruned",
    "check_excluded_layers",
    "prune_model",
    "is_pruned",
    "check_retrain_compatible",
]

_LOG = logging.getLogger(__name__)


@dataclass
class PruneResult:
    """A pruned model and what pruning did.

    Attributes:
        model: the pruned ``keras.Model``.
        params_before: parameters of the original model.
        params_after: parameters of the pruned model.
        widths: producer layer name -> (filters before, filters after), every producer.
        blocked: producer layer name -> why its filters were all kept (blocked groups only).
    """

    model: object
    params_before: int
    params_after: int
    widths: dict[str, tuple[int, int]] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Parameters kept over parameters before (TLT's logged "Pruning ratio")."""
        return self.params_after / self.params_before if self.params_before else 1.0


def check_excluded_layers(model, names) -> None:
    """Raise unless every name is a layer of ``model``.

    Raises:
        SpecError: a name is not a layer; the message lists the closest layer names.
    """
    layers = [layer.name for layer in model.layers]
    for name in names:
        if name not in layers:
            close = difflib.get_close_matches(name, layers, n=5, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise SpecError(f"--excluded_layers: the model has no layer named {name!r}{hint}",
                            field="excluded_layers")


def prune_model(model, settings: PruneSettings | None = None) -> PruneResult:
    """Prune a functional Keras model's filters.

    Args:
        model: a functional ``keras.Model`` (TLT classification or DetectNet_v2, or any graph
            of stock layers each called once).
        settings: prune options (default: the guide's defaults).

    Returns:
        The pruned model, both parameter counts and every producer's widths.

    Raises:
        SpecError: invalid settings or an excluded layer the model lacks.
        ModelFileError: the model is not a functional graph or reuses a layer.
    """
    settings = settings or PruneSettings()
    settings.validate()
    check_excluded_layers(model, settings.excluded_layers)
    _LOG.info("Pruning model and appending pruned nodes to new graph")
    graph = build_channel_graph(model, settings.excluded_layers)
    plan = build_prune_plan(model, graph, settings)
    pruned = rebuild_pruned(model, graph, plan)
    widths, blocked = {}, {}
    for layer, gid in graph.producer_group.items():
        root = graph.find(gid)
        widths[layer] = (plan.sizes[root], len(plan.kept[root]))
        if root in plan.blocked:
            blocked[layer] = plan.blocked[root]
        _LOG.debug("%s: %d -> %d filters%s", layer, *widths[layer],
                   f" (kept: {plan.blocked[root]})" if root in plan.blocked else "")
    return PruneResult(model=pruned, params_before=int(model.count_params()),
                       params_after=int(pruned.count_params()), widths=widths, blocked=blocked)
