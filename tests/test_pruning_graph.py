"""The channel graph of TLT's models: which layers share filters, what passes through, what is
never pruned, and what pruning refuses."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from prune_helpers import build, classifier
from tlt.errors import ModelFileError
from tlt.pruning import build_channel_graph


def _merged(graph, layer):
    """Names of the producers that must keep the same filters as ``layer``."""
    return {g.layer for g in graph.members(graph.find(graph.producer_group[layer]))}


def test_resnet_with_all_projections_merges_each_block_with_its_shortcut():
    graph = build_channel_graph(build("resnet10", "classification"))
    assert _merged(graph, "block_1a_conv_2") == {"block_1a_conv_2", "block_1a_conv_shortcut"}
    assert _merged(graph, "block_1a_conv_1") == {"block_1a_conv_1"}
    assert _merged(graph, "conv1") == {"conv1"}
    assert len(graph.roots()) == 10  # conv1, 4 x (conv_1, conv_2+shortcut), predictions


def test_resnet_identity_shortcuts_merge_a_whole_stage():
    graph = build_channel_graph(build("resnet18_identity", "classification"))
    assert _merged(graph, "block_1b_conv_2") == {"block_1a_conv_2", "block_1a_conv_shortcut",
                                                 "block_1b_conv_2"}
    assert _merged(graph, "block_4b_conv_2") == {"block_4a_conv_2", "block_4a_conv_shortcut",
                                                 "block_4b_conv_2"}
    assert _merged(graph, "block_1b_conv_1") == {"block_1b_conv_1"}


@pytest.mark.slow
def test_resnet50_bottleneck_groups():
    model = classifier("resnet", 50, all_projections=False)
    graph = build_channel_graph(model)
    assert _merged(graph, "block_2d_conv_3") == {"block_2a_conv_3", "block_2a_conv_shortcut",
                                                 "block_2b_conv_3", "block_2c_conv_3",
                                                 "block_2d_conv_3"}
    assert _merged(graph, "block_2b_conv_2") == {"block_2b_conv_2"}


def test_googlenet_concatenation_maps_channels_by_offset():
    graph = build_channel_graph(build("googlenet", "classification"))
    out = graph.out_maps["inception_3a_output"][0]
    assert len(out) == 64 + 128 + 32 + 32
    branches = ["inception_3a_1x1", "inception_3a_3x3", "inception_3a_5x5",
                "inception_3a_pool_proj"]
    starts = [0, 64, 192, 224, 256]
    for name, start, stop in zip(branches, starts, starts[1:]):
        gid = graph.producer_group[name]
        np.testing.assert_array_equal(out.gid[start:stop], gid)
        np.testing.assert_array_equal(out.idx[start:stop], np.arange(stop - start))
    # The next module's 1x1 convolution reads exactly that map.
    assert graph.in_maps["inception_3b_1x1"][0] is out


def test_mobilenet_depthwise_layers_follow_their_input_group():
    graph = build_channel_graph(build("mobilenet_v1", "classification"))
    pw1 = graph.producer_group["conv_pw_1"]
    for name in ("conv_pad_2", "conv_dw_2", "conv_dw_2_bn", "conv_dw_2_relu"):
        assert graph.out_maps[name][0].single_group() == pw1, name
    assert "conv_dw_2" not in graph.producer_group


def test_mobilenet_v2_identity_adds_merge_projections():
    graph = build_channel_graph(build("mobilenet_v2_identity", "classification"))
    assert _merged(graph, "block_2_project") == {"block_1_project", "block_2_project"}
    graph = build_channel_graph(build("mobilenet_v2", "classification"))
    assert _merged(graph, "block_2_project") == {"block_2_project", "block_2_projected_inputs"}


@pytest.mark.parametrize("task, heads, outputs", [
    ("classification", ["predictions"], ["predictions"]),
    ("detection", ["output_cov_conv", "output_bbox_conv"], ["output_cov", "output_bbox"]),
])
def test_heads_are_blocked(task, heads, outputs):
    graph = build_channel_graph(build("resnet10", task))
    for head, output in zip(heads, outputs):
        reason = graph.blocked_reason(graph.find(graph.producer_group[head]))
        assert reason == f"{head}: feeds model output {output}"
    last = graph.find(graph.producer_group["block_4a_conv_2"])
    assert graph.blocked_reason(last) is None


def test_classifier_dropout_and_flatten_pass_the_last_group():
    graph = build_channel_graph(classifier("vgg", 16, dropout=0.3))
    last = graph.producer_group["block_5c_conv_1"]
    assert graph.in_maps["predictions"][0].single_group() == last
    assert graph.classes["dropout"] == "Dropout"


def test_a_reused_layer_is_refused():
    inputs = keras.Input((4, 4, 3), name="x")
    conv = keras.layers.Conv2D(3, 1, name="shared")
    out = conv(conv(inputs))
    with pytest.raises(ModelFileError, match="layer shared is called 2 times"):
        build_channel_graph(keras.Model(inputs, out))


def test_softmax_over_channels_blocks_its_group():
    inputs = keras.Input((4, 4, 3), name="x")
    x = keras.layers.Conv2D(8, 1, activation="softmax", name="attention")(inputs)
    out = keras.layers.Conv2D(2, 1, name="head")(x)
    graph = build_channel_graph(keras.Model(inputs, out))
    assert "softmax" in graph.blocked_reason(graph.producer_group["attention"])


def test_a_sequential_model_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="seq")
    with pytest.raises(ModelFileError, match="model 'seq' is not a functional Keras graph"):
        build_channel_graph(model)
