"""Channel groups of a functional Keras model, read from ``model.get_config()``.

Every Conv2D / Dense / Conv2DTranspose output starts a *group*: its filters. Each tensor of the
graph gets a `ChannelMap` saying, for every channel of its last axis, which group and which
filter of that group it carries. Layers that only transform channels one by one (batch norm,
activations, pooling, dropout, zero padding, depthwise convolutions) pass the map through;
`Concatenate` joins maps end to end (GoogLeNet); `Flatten` repeats the map once per spatial
position, which is how a Dense layer's input rows line up with the filters before it; an
element-wise op (residual `Add`, ...) forces its inputs to keep the same filters, so their groups
are merged with union-find.

A group is *blocked* (never pruned) when it reaches a model output (the heads keep their
widths), when the user excludes a layer carrying it, or when a layer that pruning cannot cut
(Permute, Reshape, a softmax over channels, ...) consumes it. Such layers are *opaque*: their
output is untracked and their weights are copied unchanged, so any model prunes safely, only less.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlt.errors import ModelFileError

__all__ = ["PRODUCERS", "ChannelMap", "Group", "ChannelGraph", "build_channel_graph"]

# Layers whose output channels are their own filters, with the axes of their kernel that hold
# the input and the output channels, and the config key of their width.
PRODUCERS = {
    "Conv1D": (-2, -1, "filters"),
    "Conv2D": (-2, -1, "filters"),
    "Conv3D": (-2, -1, "filters"),
    "Dense": (-2, -1, "units"),
    "Conv2DTranspose": (-1, -2, "filters"),
}
_ELEMENTWISE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
# Channel-wise layers: output channel c depends on input channel c only.
_PASS_THROUGH = {
    "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D", "MaxPooling1D", "MaxPooling2D",
    "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "Identity",
}
# Activations that mix channels, so a layer using one cannot lose or keep channels freely.
_MIXING_ACTIVATIONS = {"softmax", "log_softmax"}


@dataclass(frozen=True, eq=False)  # arrays inside: compare maps by identity
class ChannelMap:
    """Which filter each channel of a tensor's last axis carries.

    Attributes:
        gid: group id per channel, -1 where the channel belongs to no group (untracked).
        idx: filter index within that group per channel.
    """

    gid: np.ndarray
    idx: np.ndarray

    @classmethod
    def untracked(cls, size: int) -> "ChannelMap":
        """A map of ``size`` channels that belong to no group."""
        return cls(np.full(size, -1, dtype=np.int64), np.arange(size, dtype=np.int64))

    @classmethod
    def whole(cls, gid: int, size: int) -> "ChannelMap":
        """The map of a producer's output: filters 0..size-1 of group ``gid``."""
        return cls(np.full(size, gid, dtype=np.int64), np.arange(size, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.gid)

    def groups(self) -> set[int]:
        """The ids of the groups present in this map."""
        return {int(g) for g in np.unique(self.gid) if g >= 0}

    def single_group(self) -> int | None:
        """The group id when the map is exactly one whole group in filter order, else None."""
        if len(self) == 0 or self.gid[0] < 0 or not np.all(self.gid == self.gid[0]):
            return None
        return int(self.gid[0]) if np.array_equal(self.idx, np.arange(len(self))) else None


@dataclass(frozen=True)
class Group:
    """The filters of one producer layer.

    Attributes:
        gid: the group id.
        layer: the producer layer's name.
        size: its number of filters.
    """

    gid: int
    layer: str
    size: int


@dataclass
class ChannelGraph:
    """The channel analysis of a model.

    Attributes:
        order: layer names in topological order.
        classes: layer name -> Keras class name.
        in_maps: layer name -> channel map of each input tensor.
        out_maps: layer name -> channel map of each output tensor.
        groups: every group, indexed by gid.
        producer_group: producer layer name -> its gid.
        opaque: names of the layers treated as opaque (weights copied unchanged).
        outputs: names of the layers producing the model's outputs.
    """

    order: list[str] = field(default_factory=list)
    classes: dict[str, str] = field(default_factory=dict)
    in_maps: dict[str, list[ChannelMap]] = field(default_factory=dict)
    out_maps: dict[str, list[ChannelMap]] = field(default_factory=dict)
    groups: list[Group] = field(default_factory=list)
    producer_group: dict[str, int] = field(default_factory=dict)
    opaque: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)
    _parent: list[int] = field(default_factory=list)
    _blocked: dict[int, str] = field(default_factory=dict)

    def new_group(self, layer: str, size: int) -> int:
        """Register the filters of producer ``layer`` as a new group; return its id."""
        gid = len(self.groups)
        self.groups.append(Group(gid, layer, size))
        self._parent.append(gid)
        self.producer_group[layer] = gid
        return gid

    def find(self, gid: int) -> int:
        """The representative (root) of the merged set holding group ``gid``."""
        root = gid
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[gid] != root:  # path compression
            self._parent[gid], gid = root, self._parent[gid]
        return root

    def union(self, a: int, b: int) -> None:
        """Merge the sets of groups ``a`` and ``b`` (they must keep the same filters)."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def block(self, gids, reason: str, *, override: bool = False) -> None:
        """Mark groups as never pruned (the first reason given is kept unless ``override``)."""
        for gid in gids:
            if override:
                self._blocked[int(gid)] = reason
            else:
                self._blocked.setdefault(int(gid), reason)

    def roots(self) -> list[int]:
        """The representative of every merged set, in order."""
        return sorted({self.find(g.gid) for g in self.groups})

    def members(self, root: int) -> list[Group]:
        """The groups merged into the set of ``root``."""
        return [g for g in self.groups if self.find(g.gid) == root]

    def blocked_reason(self, root: int) -> str | None:
        """Why the set of ``root`` is never pruned, or None when it may be."""
        for group in self.members(root):
            if group.gid in self._blocked:
                return f"{group.layer}: {self._blocked[group.gid]}"
        return None


def build_channel_graph(model, excluded_layers=()) -> ChannelGraph:
    """Analyse a functional Keras model's channels.

    Args:
        model: a functional ``keras.Model`` whose layers are each called once.
        excluded_layers: names of layers whose output channels must all be kept; the group(s)
            they carry are blocked as a whole. Names must exist (checked by the caller).

    Returns:
        The channel graph.

    Raises:
        ModelFileError: the model is not a functional graph, or reuses a layer.
    """
    config = model.get_config()
    if not isinstance(config, dict) or "output_layers" not in config:
        raise ModelFileError(f"model {model.name!r} is not a functional Keras graph; "
                             f"pruning needs one")
    entries = {entry["name"]: entry for entry in config["layers"]}
    inbound = {name: _inbound(entry) for name, entry in entries.items()}
    outputs = _output_refs(config["output_layers"])
    graph = ChannelGraph(order=_topological(inbound), outputs={name for name, _ in outputs})
    for name in graph.order:
        graph.classes[name] = entries[name]["class_name"]
        graph.in_maps[name] = [graph.out_maps[src][i] for src, i in inbound[name]]
        graph.out_maps[name] = _layer_out_maps(graph, name, entries[name]["config"],
                                               model.get_layer(name))
    for src, index in outputs:
        # The heads' own reason, whatever else would also keep them whole.
        graph.block(graph.out_maps[src][index].groups(), f"feeds model output {src}",
                    override=True)
    for name in excluded_layers:
        for out_map in graph.out_maps[name]:
            graph.block(out_map.groups(), f"excluded layer {name}")
    return graph


# --------------------------------------------------------------------------------------------
# Reading the config


def _tensor_refs(value, found: list) -> list:
    """Collect ``keras_history`` references of every tensor nested in a node's args/kwargs."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            found.append(value["config"]["keras_history"])
        else:
            for item in value.values():
                _tensor_refs(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _tensor_refs(item, found)
    return found


def _inbound(entry: dict) -> list[tuple[str, int]]:
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise ModelFileError(f"layer {entry['name']} is called {len(nodes)} times; pruning "
                             f"needs every layer called once")
    refs = _tensor_refs([nodes[0]["args"], nodes[0].get("kwargs", {})], []) if nodes else []
    for layer, node_index, _ in refs:
        if node_index != 0:
            raise ModelFileError(f"layer {entry['name']} reads a second call of layer {layer}; "
                                 f"pruning needs every layer called once")
    return [(layer, int(tensor_index)) for layer, _, tensor_index in refs]


def _topological(inbound: dict[str, list[tuple[str, int]]]) -> list[str]:
    order, done = [], set()
    for start in inbound:
        stack = [(start, False)]
        while stack:
            name, expanded = stack.pop()
            if name in done:
                continue
            if expanded:
                done.add(name)
                order.append(name)
                continue
            stack.append((name, True))
            stack.extend((src, False) for src, _ in inbound[name] if src not in done)
    return order


def _output_refs(output_layers) -> list[tuple[str, int]]:
    # A single-output model stores one [name, node, tensor] triple, several store a list of them.
    if output_layers and isinstance(output_layers[0], str):
        output_layers = [output_layers]
    return [(name, int(tensor_index)) for name, _, tensor_index in output_layers]


# --------------------------------------------------------------------------------------------
# Channel rules per layer kind


def _channels(shape) -> int:
    return int(shape[-1]) if len(shape) and shape[-1] is not None else 0


def _out_shapes(layer) -> list:
    output = layer.output
    return [t.shape for t in output] if isinstance(output, (list, tuple)) else [output.shape]


def _channels_last(config: dict) -> bool:
    return config.get("data_format", "channels_last") == "channels_last"


def _last_axis(config: dict, rank: int) -> bool:
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    return isinstance(axis, int) and axis in (-1, rank - 1)


def _layer_out_maps(graph: ChannelGraph, name: str, config: dict, layer) -> list[ChannelMap]:
    kind = graph.classes[name]
    ins = graph.in_maps[name]
    if kind == "InputLayer":
        return [ChannelMap.untracked(_channels(s)) for s in _out_shapes(layer)]
    rule = _RULES.get(kind)
    out = rule(graph, name, config, layer, ins) if rule else None
    if out is None:
        return _opaque(graph, name, layer, ins)
    return [out]


def _opaque(graph: ChannelGraph, name: str, layer, ins: list[ChannelMap]) -> list[ChannelMap]:
    graph.opaque.add(name)
    if name in graph.outputs:  # e.g. DetectNet_v2's Permute back to NCHW after each head
        reason = f"feeds model output {name}"
    else:
        reason = f"feeds {name} ({graph.classes[name]}), which pruning cannot cut"
    for in_map in ins:
        graph.block(in_map.groups(), reason)
    return [ChannelMap.untracked(_channels(s)) for s in _out_shapes(layer)]


def _producer(graph, name, config, layer, ins):
    if len(ins) != 1 or config.get("groups", 1) != 1 or not _channels_last(config):
        return None
    gid = graph.new_group(name, int(config[PRODUCERS[graph.classes[name]][2]]))
    if config.get("activation") in _MIXING_ACTIVATIONS:
        graph.block([gid], f"its {config['activation']} activation mixes channels")
    return ChannelMap.whole(gid, graph.groups[gid].size)


def _pass_through(graph, name, config, layer, ins):
    if len(ins) != 1 or not _channels_last(config):
        return None
    if config.get("activation") in _MIXING_ACTIVATIONS:
        return None
    rank = len(layer.output.shape)
    if graph.classes[name] == "BatchNormalization" and not _last_axis(config, rank):
        return None
    return ins[0]


def _depthwise(graph, name, config, layer, ins):
    if len(ins) != 1 or not _channels_last(config):
        return None
    mult = int(config.get("depth_multiplier", 1))
    # Output channel c*mult + m is filter m of input channel c.
    return ChannelMap(np.repeat(ins[0].gid, mult), np.repeat(ins[0].idx, mult))


def _elementwise(graph, name, config, layer, ins):
    singles = [m.single_group() for m in ins]
    if len(ins) < 2 or None in singles or len({len(m) for m in ins}) != 1:
        return None
    for gid in singles[1:]:
        graph.union(singles[0], gid)
    return ins[0]


def _concatenate(graph, name, config, layer, ins):
    if not _last_axis(config, len(layer.output.shape)):
        return None
    return ChannelMap(np.concatenate([m.gid for m in ins]), np.concatenate([m.idx for m in ins]))


def _flatten(graph, name, config, layer, ins):
    shape = layer.input.shape
    spatial = shape[1:-1]
    if len(ins) != 1 or not _channels_last(config) or any(d is None for d in spatial):
        return None
    # Channels-last flattening puts position p's channels at rows p*C .. p*C + C - 1.
    positions = int(np.prod(spatial)) if len(spatial) else 1
    return ChannelMap(np.tile(ins[0].gid, positions), np.tile(ins[0].idx, positions))


_RULES: dict[str, Any] = {
    **{kind: _producer for kind in PRODUCERS},
    **{kind: _pass_through for kind in _PASS_THROUGH},
    **{kind: _elementwise for kind in _ELEMENTWISE},
    "DepthwiseConv2D": _depthwise,
    "Concatenate": _concatenate,
    "Flatten": _flatten,
}
