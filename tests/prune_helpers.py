"""Helpers of the pruning tests: tiny models of every family, non-trivial weights, dead filters.

`kill_filters` makes chosen filters of a channel group *exactly* zero all the way down: the
producers' kernel columns and biases are zeroed, so the convolution outputs 0 there; every batch
norm on the way gets gamma = beta = moving_mean = 0 at those channels, so it outputs
``0 * (x - 0) / sqrt(var + eps) + 0 = 0`` whatever x is; a depthwise convolution on the way has
its kernel and bias zeroed there (its input is 0 anyway, and its norms vote on the group);
ReLU(0), max/average pooling, zero padding and Add of zeros all stay 0.
Such channels contribute nothing to any later layer, so removing them (and the matching input
rows of their consumers) must leave the model's outputs unchanged up to float rounding.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from tlt.io.modelfile import save_keras_model
from tlt.models.classifier import build_classifier
from tlt.models.detectnet_v2.model import build_detectnet_v2
from tlt.pruning import build_channel_graph
from tlt.pruning.graph import PRODUCERS

__all__ = ["FAMILIES", "classifier", "detector", "build", "randomize", "kill_filters",
           "kill_fraction", "save_model"]

# (arch, n_layers, all_projections): every family and the ResNet/MobileNet v2 shortcut variants.
FAMILIES = {
    "resnet10": ("resnet", 10, True),
    "resnet18_identity": ("resnet", 18, False),
    "vgg16": ("vgg", 16, True),
    "alexnet": ("alexnet", 0, True),
    "googlenet": ("googlenet", 0, True),
    "mobilenet_v1": ("mobilenet_v1", 0, True),
    "mobilenet_v2": ("mobilenet_v2", 0, True),
    "mobilenet_v2_identity": ("mobilenet_v2", 0, False),
}
CLASSES = ("car", "person", "bike")


def classifier(arch: str, n_layers: int = 18, all_projections: bool = True, size: int = 32,
               dropout: float = 0.0):
    """A tiny classifier (3 classes, 3 x size x size input)."""
    config = SimpleNamespace(arch=arch, n_layers=n_layers, input_image_size=f"3,{size},{size}",
                             all_projections=all_projections, dropout=dropout)
    return build_classifier(config, len(CLASSES))


def detector(arch: str, n_layers: int = 18, all_projections: bool = True, size: int = 32):
    """A tiny DetectNet_v2 (3 classes, 3 x size x size input, stride 16)."""
    config = SimpleNamespace(template=arch, arch=arch, num_layers=n_layers, use_pooling=False,
                             use_batch_norm=True, all_projections=all_projections,
                             freeze_blocks=[], freeze_bn=False, dropout_rate=0.0)
    return build_detectnet_v2(config, CLASSES, input_height=size, input_width=size,
                              allow_small_input=True)


def build(family: str, task: str):
    """The model of `FAMILIES` ``family`` for ``task`` ("classification" or "detection")."""
    arch, n_layers, projections = FAMILIES[family]
    make = classifier if task == "classification" else detector
    return make(arch, n_layers, projections)


def randomize(model, seed: int = 0) -> None:
    """Give biases and batch-norm parameters/statistics non-trivial values (kernels keep their
    random initialisation), as a trained model has."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        kind = type(layer).__name__
        weights = layer.get_weights()
        if kind == "BatchNormalization":
            n = weights[0].shape[0]
            weights = [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                       rng.uniform(0.5, 1.5, n)]
        elif weights and len(weights) == 2 and kind in (*PRODUCERS, "DepthwiseConv2D"):
            weights = [weights[0], rng.normal(0, 0.05, weights[1].shape)]
        layer.set_weights([np.asarray(w, dtype=np.float32) for w in weights])


def kill_filters(model, graph, root: int, channels) -> None:
    """Make filters ``channels`` of the merged group ``root`` exactly zero (module docstring)."""
    channels = np.asarray(sorted(channels))
    members = {g.gid for g in graph.members(root)}
    for group in graph.members(root):
        layer = model.get_layer(group.layer)
        out_axis = PRODUCERS[graph.classes[group.layer]][1]
        weights = layer.get_weights()
        kernel = np.moveaxis(weights[0], out_axis, -1).copy()
        kernel[..., channels] = 0.0
        weights[0] = np.moveaxis(kernel, -1, out_axis)
        for w in weights[1:]:
            w[channels] = 0.0
        layer.set_weights(weights)
    for name in graph.order:
        kind = graph.classes[name]
        if kind not in ("BatchNormalization", "DepthwiseConv2D") or not graph.in_maps[name]:
            continue
        in_map = graph.in_maps[name][0]
        hit = np.isin(in_map.gid, list(members)) & np.isin(in_map.idx, channels)
        if not hit.any():
            continue
        layer = model.get_layer(name)
        weights = layer.get_weights()
        if kind == "BatchNormalization":
            for i in (0, 1, 2):  # gamma, beta, moving mean
                weights[i][hit] = 0.0
        else:  # depthwise kernel (its norms vote in TLT's equalization) and bias
            weights[0][:, :, hit, :] = 0.0
            if len(weights) == 2:
                weights[1][hit] = 0.0
        layer.set_weights(weights)


def kill_fraction(model, fraction: float = 0.25, seed: int = 0, excluded=()):
    """Kill a random ``fraction`` of the filters of every prunable group.

    Returns:
        ``(graph, expected)``: the channel graph and, per producer layer, the width it must
        have after pruning with granularity 1, min_num_filters 1 and a small threshold.
    """
    rng = np.random.default_rng(seed)
    graph = build_channel_graph(model, excluded)
    expected = {}
    for root in graph.roots():
        size = graph.members(root)[0].size
        dead = []
        if graph.blocked_reason(root) is None:
            dead = rng.choice(size, size=max(1, int(size * fraction)), replace=False)
            kill_filters(model, graph, root, dead)
        for group in graph.members(root):
            expected[group.layer] = size - len(dead)
    return graph, expected


def save_model(model, path, task: str, key: str | None = "tlt_encode") -> str:
    """Save ``model`` as a .tlt of this toolkit (the metadata training writes) and return it."""
    meta = {"task": task, "arch": model.name, "classes": list(CLASSES),
            "input_dims": list(model.inputs[0].shape[1:])}
    if task == "detection":
        meta["output_names"] = ["output_cov", "output_bbox"]
    save_keras_model(model, str(path), meta, key=key)
    return str(path)
