"""Pruning dead filters must not change a model's outputs, for every backbone family and task.

A random quarter of the filters of every prunable channel group is made exactly zero
(`prune_helpers.kill_filters`: kernel, bias, and the following batch norms' gamma, beta and
moving mean); pruning with a small threshold, granularity 1 and min_num_filters 1 must remove
exactly those filters (checked layer by layer) and leave the outputs equal on random inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from prune_helpers import FAMILIES, build, kill_fraction, randomize
from tlt.pruning import PruneSettings, prune_model

EXACT = PruneSettings(pruning_threshold=0.01, pruning_granularity=1, min_num_filters=1)


def _outputs(model, x):
    out = model(x, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _check_exact(model, seed: int = 0):
    randomize(model, seed)
    _, expected = kill_fraction(model, 0.25, seed)
    x = np.random.default_rng(seed).normal(size=(2, *model.inputs[0].shape[1:])).astype("float32")
    before = _outputs(model, x)

    result = prune_model(model, EXACT)

    widths = {name: after for name, (_, after) in result.widths.items()}
    assert widths == expected
    assert result.params_after < result.params_before
    assert result.params_after == result.model.count_params()
    after = _outputs(result.model, x)
    assert [o.shape for o in after] == [o.shape for o in before]
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    return result


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("task", ["classification", "detection"])
def test_pruning_dead_filters_keeps_outputs(family, task):
    model = build(family, task)
    result = _check_exact(model)
    heads = ["predictions"] if task == "classification" else ["output_cov_conv", "output_bbox_conv"]
    for head in heads:
        before, after = result.widths[head]
        assert before == after, head
        assert head in result.blocked


def test_pruned_model_weights_are_the_survivors():
    """Kept filters carry exactly their old weights (no re-initialisation, right order)."""
    model = build("resnet10", "classification")
    randomize(model, 1)
    graph, _ = kill_fraction(model, 0.25, 1)
    result = prune_model(model, EXACT)
    old = model.get_layer("block_2a_conv_1").get_weights()[0]
    new = result.model.get_layer("block_2a_conv_1").get_weights()[0]
    alive_out = np.flatnonzero(np.abs(old).sum(axis=(0, 1, 2)) > 0)
    prev = model.get_layer("block_1a_conv_2").get_weights()[0]
    alive_in = np.flatnonzero(np.abs(prev).sum(axis=(0, 1, 2)) > 0)
    np.testing.assert_array_equal(new, old[:, :, alive_in][..., alive_out])


@pytest.mark.slow
@pytest.mark.parametrize("arch, n_layers, all_projections", [
    ("resnet", 34, True), ("resnet", 50, True), ("resnet", 50, False), ("resnet", 101, False),
    ("vgg", 19, True),
])
def test_deeper_backbones_prune_exactly(arch, n_layers, all_projections):
    from prune_helpers import classifier

    _check_exact(classifier(arch, n_layers, all_projections))
