"""Rebuild a model with fewer filters and copy its surviving weights.

The model's config is edited (new ``filters`` / ``units`` on pruned producers; every saved
``build_config`` dropped, since BatchNormalization and friends would otherwise rebuild with their
old widths) and rebuilt with ``keras.Model.from_config``: the same layer names, classes, options,
regularizers and trainable flags, only narrower. Then each layer gets its old weights sliced to
the channels that survive on its input and output.
"""

from __future__ import annotations

import copy

import numpy as np

from tlt.errors import ModelFileError
from tlt.pruning.graph import PRODUCERS, ChannelGraph
from tlt.pruning.plan import PrunePlan

__all__ = ["pruned_config", "rebuild_pruned", "sliced_weights"]


def pruned_config(model, graph: ChannelGraph, plan: PrunePlan) -> dict:
    """The model's functional config with the plan's widths and no saved build shapes."""
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        entry.pop("build_config", None)
        name = entry["name"]
        if name in graph.producer_group:
            width_key = PRODUCERS[graph.classes[name]][2]
            entry["config"][width_key] = plan.width(graph, name)
    return config


def sliced_weights(layer, graph: ChannelGraph, plan: PrunePlan) -> list[np.ndarray]:
    """The old ``layer``'s weights cut to the channels the plan keeps.

    Producers lose input rows and output filters, batch norm and depthwise convolutions lose the
    channels of their input; opaque and weightless layers keep everything.
    """
    weights = layer.get_weights()
    name, kind = layer.name, graph.classes[layer.name]
    if not weights or name in graph.opaque:
        return weights
    in_keep = plan.keep_mask(graph, graph.in_maps[name][0])
    if name in graph.producer_group:
        in_axis, out_axis, _ = PRODUCERS[kind]
        out_keep = plan.keep_mask(graph, graph.out_maps[name][0])
        kernel = np.compress(out_keep, np.compress(in_keep, weights[0], axis=in_axis),
                             axis=out_axis)
        return [kernel] + [w[out_keep] for w in weights[1:]]
    if kind == "DepthwiseConv2D":
        kernel = np.compress(in_keep, weights[0], axis=2)
        # The bias holds channel c's multiplier m at c * mult + m, the order of the output map.
        return [kernel] + [w[plan.keep_mask(graph, graph.out_maps[name][0])] for w in weights[1:]]
    if kind == "BatchNormalization":
        return [w[in_keep] for w in weights]
    raise ModelFileError(f"layer {name} ({kind}) has weights pruning does not know how to cut")


def rebuild_pruned(model, graph: ChannelGraph, plan: PrunePlan):
    """Build the pruned model and load its weights.

    Args:
        model: the original functional model.
        graph: its channel graph.
        plan: the filters to keep.

    Returns:
        A new ``keras.Model`` with the same name, layer names, inputs and outputs.

    Raises:
        ModelFileError: the rebuilt graph does not accept the sliced weights, or its inputs or
            outputs changed shape (a bug, never expected).
    """
    import keras

    pruned = keras.Model.from_config(pruned_config(model, graph, plan))
    for layer in pruned.layers:
        weights = sliced_weights(model.get_layer(layer.name), graph, plan)
        if not weights:
            continue
        try:
            layer.set_weights(weights)
        except ValueError as err:
            raise ModelFileError(f"pruning layer {layer.name}: the rebuilt layer does not take "
                                 f"its sliced weights: {err}") from err
    _check_interface(model, pruned)
    return pruned


def _check_interface(model, pruned) -> None:
    for kind, old, new in (("input", model.inputs, pruned.inputs),
                           ("output", model.outputs, pruned.outputs)):
        old_shapes = [tuple(t.shape) for t in old]
        new_shapes = [tuple(t.shape) for t in new]
        if old_shapes != new_shapes:
            raise ModelFileError(f"pruning changed the model's {kind} shapes from {old_shapes} "
                                 f"to {new_shapes}")
