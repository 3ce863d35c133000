"""Which filters pruning keeps: norms, normalisers, equalization, threshold, granularity, minimum,
excluded layers, and parameter counts, on hand-made models whose numbers are known."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from prune_helpers import build, kill_filters, randomize
from tlt.errors import SpecError
from tlt.pruning import PruneSettings, build_channel_graph, prune_model
from tlt.pruning.criteria import equalize, filter_norms, normalize
from tlt.pruning.plan import num_filters_to_keep, select_filters


# ------------------------------------------------------------------------------------------
# Criteria


def test_filter_norms_are_l2_norms_of_each_output_filter():
    kernel = np.zeros((3, 3, 2, 4), dtype=np.float32)
    kernel[0, 0, 0, 0] = 3.0
    kernel[1, 1, 1, 0] = 4.0  # filter 0: sqrt(9 + 16) = 5
    kernel[..., 1] = 1.0  # filter 1: sqrt(18)
    kernel[2, 2, 0, 3] = -2.0  # filter 3: 2; filter 2: 0
    np.testing.assert_allclose(filter_norms(kernel), [5.0, np.sqrt(18.0), 0.0, 2.0])
    # Conv2DTranspose keeps its output filters on axis -2.
    np.testing.assert_allclose(filter_norms(np.swapaxes(kernel, -1, -2), out_axis=-2),
                               [5.0, np.sqrt(18.0), 0.0, 2.0])


def test_normalizers_max_and_l2():
    norms = np.array([3.0, 4.0, 0.0, 2.0])
    np.testing.assert_allclose(normalize(norms, "max"), [0.75, 1.0, 0.0, 0.5])
    np.testing.assert_allclose(normalize(norms, "L2"), norms / np.sqrt(29.0))
    np.testing.assert_array_equal(normalize(np.zeros(3), "max"), np.zeros(3))
    np.testing.assert_array_equal(normalize(np.zeros(3), "L2"), np.zeros(3))


@pytest.mark.parametrize("criterion, expected", [
    ("union", [1.0, 0.5, 0.4, 0.0]),
    ("intersection", [0.25, 0.0, 0.1, 0.0]),
    ("arithmetic_mean", [0.625, 0.25, 0.25, 0.0]),
    ("geometric_mean", [0.5, 0.0, 0.2, 0.0]),
])
def test_equalization_criteria(criterion, expected):
    a = np.array([1.0, 0.5, 0.4, 0.0])
    b = np.array([0.25, 0.0, 0.1, 0.0])
    np.testing.assert_allclose(equalize([a, b], criterion), expected)


# ------------------------------------------------------------------------------------------
# Counting and selecting


@pytest.mark.parametrize("num_filters, above, granularity, minimum, expected", [
    (64, 37, 8, 16, 40),   # rounded up to a multiple of the granularity
    (64, 40, 8, 16, 40),   # already a multiple
    (64, 3, 8, 16, 16),    # at least min_num_filters
    (64, 3, 8, 20, 24),    # the minimum is rounded up too
    (20, 19, 8, 16, 20),   # never more than the layer has
    (8, 2, 8, 16, 8),      # a layer narrower than the minimum keeps everything
    (64, 0, 1, 1, 1),      # never zero filters
    (64, 37, 1, 1, 37),
])
def test_num_filters_to_keep(num_filters, above, granularity, minimum, expected):
    assert num_filters_to_keep(num_filters, above, granularity, minimum) == expected


def test_select_filters_keeps_the_best_scores_in_index_order():
    scores = np.array([0.05, 0.9, 0.3, 0.02, 1.0, 0.3, 0.3, 0.08])
    settings = PruneSettings(pruning_threshold=0.1, pruning_granularity=1, min_num_filters=1)
    np.testing.assert_array_equal(select_filters(scores, settings), [1, 2, 4, 5, 6])
    # Granularity 2 rounds 5 up to 6: the best of the rest (0.08, index 7) is added.
    settings = PruneSettings(pruning_threshold=0.1, pruning_granularity=2, min_num_filters=1)
    np.testing.assert_array_equal(select_filters(scores, settings), [1, 2, 4, 5, 6, 7])
    # Ties at the cut go to the lower index.
    settings = PruneSettings(pruning_threshold=0.95, pruning_granularity=1, min_num_filters=3)
    np.testing.assert_array_equal(select_filters(scores, settings), [1, 2, 4])


@pytest.mark.parametrize("field, value, message", [
    ("pruning_threshold", 0.0, "--pruning_threshold must be in (0, 1], got 0"),
    ("pruning_threshold", 1.5, "--pruning_threshold must be in (0, 1], got 1.5"),
    ("pruning_threshold", -0.2, "--pruning_threshold must be in (0, 1], got -0.2"),
    ("pruning_granularity", 0, "--pruning_granularity must be >= 1, got 0"),
    ("min_num_filters", 0, "--min_num_filters must be >= 1, got 0"),
    ("normalizer", "l1", "--normalizer must be one of max, L2, got 'l1'"),
    ("equalization_criterion", "any", "--equalization_criterion must be one of union"),
])
def test_invalid_settings(field, value, message):
    with pytest.raises(SpecError) as err:
        PruneSettings(**{field: value}).validate()
    assert message in str(err.value)
    assert err.value.field == field


def test_threshold_one_is_valid():
    PruneSettings(pruning_threshold=1.0).validate()


# ------------------------------------------------------------------------------------------
# Hand-made models


def _two_branch_add(scores_a, scores_b):
    """input -> conv_a, conv_b (1x1, filter i of each scaled to its score) -> Add -> conv_c."""
    inputs = keras.Input((4, 4, 2), name="x")
    n = len(scores_a)
    a = keras.layers.Conv2D(n, 1, use_bias=False, name="conv_a")(inputs)
    b = keras.layers.Conv2D(n, 1, use_bias=False, name="conv_b")(inputs)
    s = keras.layers.Add(name="add")([a, b])
    c = keras.layers.Conv2D(3, 1, name="conv_c")(s)
    model = keras.Model(inputs, c)
    for name, scores in (("conv_a", scores_a), ("conv_b", scores_b)):
        kernel = np.zeros((1, 1, 2, n), dtype=np.float32)
        kernel[0, 0, 0, :] = scores
        model.get_layer(name).set_weights([kernel])
    return model


@pytest.mark.parametrize("criterion, kept", [
    ("union", [0, 1, 2, 4]),            # max: 1, 1, .5, .02, .3, .04
    ("intersection", [2]),              # min: .04, .02, .5, .01, .02, .02
    ("arithmetic_mean", [0, 1, 2]),     # mean: .52, .51, .5, .015, .16, .03
    ("geometric_mean", [2]),            # gmean: .2, .14, .5, .014, .077, .028
])
def test_equalization_on_an_element_wise_group(criterion, kept):
    model = _two_branch_add([1.0, 0.02, 0.5, 0.01, 0.3, 0.04],
                            [0.04, 1.0, 0.5, 0.02, 0.02, 0.02])
    settings = PruneSettings(equalization_criterion=criterion, pruning_threshold=0.2,
                             pruning_granularity=1, min_num_filters=1)
    result = prune_model(model, settings)
    assert result.widths["conv_a"] == (6, len(kept))
    assert result.widths["conv_b"] == (6, len(kept))
    kernel_a = result.model.get_layer("conv_a").get_weights()[0][0, 0, 0]
    np.testing.assert_allclose(kernel_a, np.array([1.0, 0.02, 0.5, 0.01, 0.3, 0.04])[kept])
    assert result.model.get_layer("conv_c").get_weights()[0].shape == (1, 1, len(kept), 3)


def test_parameter_counts_of_a_hand_made_model():
    inputs = keras.Input((8, 8, 3), name="x")
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, out)
    before = (3 * 3 * 3 * 16 + 16) + 4 * 16 + (3 * 3 * 16 * 8 + 8) + (8 * 3 + 3)
    assert model.count_params() == before
    kernel, bias = model.get_layer("conv1").get_weights()
    kernel[..., 5:] *= 1e-3  # 11 weak filters of conv1
    model.get_layer("conv1").set_weights([kernel, bias])
    kernel, bias = model.get_layer("conv2").get_weights()
    kernel[..., :2] = 0.0  # 2 dead filters of conv2
    model.get_layer("conv2").set_weights([kernel, bias])

    result = prune_model(model, PruneSettings(pruning_threshold=0.1, pruning_granularity=2,
                                              min_num_filters=4))
    # conv1: 5 strong filters -> 6 (granularity 2); conv2: 6 left, min 4 -> 6; head kept.
    assert result.widths == {"conv1": (16, 6), "conv2": (8, 6), "predictions": (3, 3)}
    after = (3 * 3 * 3 * 6 + 6) + 4 * 6 + (3 * 3 * 6 * 6 + 6) + (6 * 3 + 3)
    assert (result.params_before, result.params_after) == (before, after)
    assert result.ratio == pytest.approx(after / before)
    assert result.model.get_layer("bn1").get_weights()[0].shape == (6,)


def test_min_num_filters_keeps_the_strongest_dead_ones_out():
    """With every filter but one dead, min_num_filters decides the width."""
    inputs = keras.Input((4, 4, 2), name="x")
    x = keras.layers.Conv2D(32, 1, name="conv")(inputs)
    out = keras.layers.Conv2D(2, 1, name="head")(x)
    model = keras.Model(inputs, out)
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., 1:] = 0.0
    model.get_layer("conv").set_weights([kernel, bias])
    for minimum, granularity, width in ((16, 8, 16), (5, 1, 5), (5, 4, 8), (1, 1, 1)):
        result = prune_model(model, PruneSettings(min_num_filters=minimum,
                                                  pruning_granularity=granularity))
        assert result.widths["conv"] == (32, width)
        assert 0 in _surviving(model, result, "conv")


def _surviving(model, result, name):
    """Indices (in the old layer) of the filters the pruned layer kept, found by their bias."""
    old_bias = model.get_layer(name).get_weights()[1]
    new_bias = result.model.get_layer(name).get_weights()[1]
    return [int(np.flatnonzero(old_bias == b)[0]) for b in new_bias]


def test_flatten_into_dense_maps_each_channel_to_its_rows():
    inputs = keras.Input((2, 2, 3), name="x")
    x = keras.layers.Conv2D(6, 1, name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    out = keras.layers.Dense(4, name="dense_out")(x)
    model = keras.Model(inputs, out)
    randomize(model)
    graph = build_channel_graph(model)
    kill_filters(model, graph, graph.find(graph.producer_group["conv"]), [1, 4])
    x = np.random.default_rng(0).normal(size=(3, 2, 2, 3)).astype("float32")
    result = prune_model(model, PruneSettings(pruning_granularity=1, min_num_filters=1))
    assert result.widths["conv"] == (6, 4)
    rows = model.get_layer("dense_out").get_weights()[0]
    kept_rows = [p * 6 + c for p in range(4) for c in (0, 2, 3, 5)]
    np.testing.assert_array_equal(result.model.get_layer("dense_out").get_weights()[0],
                                  rows[kept_rows])
    np.testing.assert_allclose(result.model(x), model(x), rtol=1e-5, atol=1e-6)


def test_a_layer_pruning_cannot_cut_keeps_its_input_whole():
    inputs = keras.Input((4, 4, 2), name="x")
    x = keras.layers.Conv2D(8, 1, name="conv")(inputs)
    x = keras.layers.Reshape((16, 8), name="reshape")(x)
    out = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, out)
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., :4] = 0.0
    model.get_layer("conv").set_weights([kernel, bias])
    result = prune_model(model, PruneSettings(pruning_granularity=1, min_num_filters=1))
    assert result.widths["conv"] == (8, 8)
    assert "reshape (Reshape)" in result.blocked["conv"]


# ------------------------------------------------------------------------------------------
# Excluded layers


def test_excluded_layer_keeps_its_whole_residual_group():
    model = build("resnet10", "classification")
    randomize(model)
    settings = PruneSettings(pruning_threshold=1.0, pruning_granularity=1, min_num_filters=1,
                             excluded_layers=("block_1a_conv_shortcut",))
    result = prune_model(model, settings)
    # Threshold 1 keeps only the strongest filter of every other layer (a residual pair under
    # union: each member's strongest, one or two filters).
    assert result.widths["block_1a_conv_shortcut"] == (64, 64)
    assert result.widths["block_1a_conv_2"] == (64, 64)
    assert "excluded layer block_1a_conv_shortcut" in result.blocked["block_1a_conv_2"]
    assert result.widths["block_1a_conv_1"] == (64, 1)
    assert result.widths["block_2a_conv_2"][1] in (1, 2)
    assert result.widths["block_2a_conv_shortcut"] == result.widths["block_2a_conv_2"]


def test_excluding_a_batch_norm_keeps_the_filters_it_normalises():
    model = build("vgg16", "classification")
    settings = PruneSettings(pruning_threshold=1.0, excluded_layers=("block_2a_bn_1",))
    result = prune_model(model, settings)
    assert result.widths["block_2a_conv_1"] == (128, 128)
    assert result.widths["block_2b_conv_1"] == (128, 16)


def test_unknown_excluded_layer_lists_close_names():
    model = build("resnet10", "classification")
    with pytest.raises(SpecError) as err:
        prune_model(model, PruneSettings(excluded_layers=("block_1a_conv_shortcu",)))
    message = str(err.value)
    assert message.startswith("--excluded_layers: the model has no layer named "
                              "'block_1a_conv_shortcu'; closest: block_1a_conv_shortcut")
    assert "\n" not in message


@pytest.mark.parametrize("criterion, width", [("union", 8), ("intersection", 7)])
def test_depthwise_norms_vote_on_the_group_they_follow(criterion, width):
    inputs = keras.Input((6, 6, 3), name="x")
    x = keras.layers.Conv2D(8, 1, name="pointwise")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    out = keras.layers.Conv2D(2, 1, name="head")(x)
    model = keras.Model(inputs, out)
    kernel, bias = model.get_layer("depthwise").get_weights()
    kernel[:, :, 3, :] = 0.0  # a strong pointwise filter feeding a dead depthwise one
    model.get_layer("depthwise").set_weights([kernel, bias])
    settings = PruneSettings(equalization_criterion=criterion, pruning_threshold=0.01,
                             pruning_granularity=1, min_num_filters=1)
    result = prune_model(model, settings)
    assert result.widths["pointwise"] == (8, width)
    assert result.model.get_layer("depthwise").get_weights()[0].shape == (3, 3, width, 1)
    assert result.model.get_layer("head").get_weights()[0].shape == (1, 1, width, 2)
