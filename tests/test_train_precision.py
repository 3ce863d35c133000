"""``training_precision.backend_floatx`` and ``cost_scaling``: mixed precision where a GPU runs it,
one warning and float32 where it cannot take effect, float32 output heads, TLT's cost scaling as
Keras loss scaling."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from tlt import spec as spec_loader
from tlt.models.detectnet_v2.model import build_detectnet_v2
from tlt.training.outputs import shippable_model
from tlt.training.precision import (LossScaleSettings, apply_loss_scaling, build_precision_plan,
                                    decide_policy, dtype_policy, float32_config,
                                    loss_scale_settings)

GUIDE = SimpleNamespace(enabled=True, initial_exponent=20.0, increment=0.005, decrement=1.0)


def _cost_scaling(**fields):
    return SimpleNamespace(**{**vars(GUIDE), **fields})


def test_float16_on_a_cpu_trains_in_float32_and_says_why_naming_the_field():
    policy, warning = decide_policy("FLOAT16", [])
    assert policy == "float32"
    assert warning.startswith("model_config.training_precision.backend_floatx: FLOAT16 cannot "
                              "take effect: no GPU is visible")
    assert warning.endswith("training in FLOAT32")
    plan = build_precision_plan("FLOAT16", GUIDE, capabilities=[])
    # A note, not a second warning: the spec loader warns about this field at load time. The
    # one line covers cost_scaling too: nothing is scaled in float32.
    assert (plan.policy, plan.loss_scale, plan.warnings) == ("float32", None, ())
    assert plan.notes == (warning,)


def test_float16_on_a_tensor_core_gpu_is_mixed_precision_with_the_guides_cost_scaling():
    assert decide_policy("FLOAT16", [(8, 0), (7, 5)]) == ("mixed_float16", None)
    plan = build_precision_plan("FLOAT16", GUIDE, capabilities=[(8, 0)])
    # 2**20 to start; +0.005 in the exponent per clean step = a doubling every 200 steps.
    assert plan == build_precision_plan("FLOAT16", GUIDE, capabilities=[(7, 0)])
    assert (plan.policy, plan.warnings) == ("mixed_float16", ())
    assert plan.loss_scale == LossScaleSettings(initial_scale=2.0 ** 20, dynamic_growth_steps=200)


def test_older_gpus_still_get_float16_but_a_warning_that_it_may_be_slow():
    policy, warning = decide_policy("FLOAT16", [(6, 1)])
    assert policy == "mixed_float16"
    assert "compute capability 6.1" in warning and "may be slower than FLOAT32" in warning


def test_float32_ignores_devices_and_notes_only_enabled_cost_scaling():
    assert decide_policy("FLOAT32", [(8, 0)]) == ("float32", None)
    assert build_precision_plan("FLOAT32", _cost_scaling(enabled=False), []).warnings == ()
    plan = build_precision_plan("FLOAT32", GUIDE, [])
    assert (plan.loss_scale, plan.warnings) == (None, ())
    assert plan.notes == ("training_config.cost_scaling.enabled has no effect in FLOAT32 "
                          "training (loss scaling protects float16 gradients); not applied",)


def test_cost_scaling_maps_onto_keras_loss_scaling_and_names_what_keras_cannot_do():
    assert loss_scale_settings(_cost_scaling(initial_exponent=15.0, increment=0.01)) == (
        LossScaleSettings(initial_scale=32768.0, dynamic_growth_steps=100), None)
    never, _ = loss_scale_settings(_cost_scaling(increment=0.0))
    assert never.dynamic_growth_steps >= 10**9
    _, warning = loss_scale_settings(_cost_scaling(decrement=2.0))
    assert warning == ("training_config.cost_scaling.decrement 2: Keras' loss scaling halves the "
                       "scale on an overflow (decrement 1.0); using 1.0")
    plan = build_precision_plan("FLOAT16", _cost_scaling(decrement=2.0), [(8, 0)])
    assert plan.warnings == (warning,)
    # Off: FLOAT16 without any loss scaling, as TLT does with cost_scaling disabled.
    assert build_precision_plan("FLOAT16", _cost_scaling(enabled=False), [(8, 0)]).loss_scale is None


def test_apply_loss_scaling_wraps_the_optimizer_with_those_settings():
    adam = keras.optimizers.Adam(1e-3)
    assert apply_loss_scaling(adam, build_precision_plan("FLOAT16", GUIDE, [])) is adam
    wrapped = apply_loss_scaling(adam, build_precision_plan("FLOAT16", GUIDE, [(8, 0)]))
    assert isinstance(wrapped, keras.optimizers.LossScaleOptimizer)
    assert wrapped.inner_optimizer is adam
    assert wrapped.initial_scale == 2.0 ** 20 and wrapped.dynamic_growth_steps == 200


def _tiny_detectnet():
    spec = spec_loader.loads('model_config { template: "resnet" num_layers: 10 }', "detection")
    return build_detectnet_v2(spec.model_config, ["car", "person"], input_height=32,
                              input_width=32, allow_small_input=True)


def test_under_mixed_precision_the_heads_compute_in_float32_and_the_shipped_model_is_float32():
    with dtype_policy("mixed_float16"):
        model = _tiny_detectnet()
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert model.get_layer("block_1a_conv_1").compute_dtype == "float16"
    for name in ("output_cov_conv", "output_cov", "output_bbox_conv", "output_bbox"):
        assert model.get_layer(name).compute_dtype == "float32", name
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 32)).astype("float32")
    cov, bbox = model(x)
    assert cov.dtype == "float32" and bbox.dtype == "float32"

    shipped = shippable_model(model)
    assert {layer.compute_dtype for layer in shipped.layers} == {"float32"}
    assert [layer.name for layer in shipped.layers] == [layer.name for layer in model.layers]
    for a, b in zip(shipped.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Same network: float32 and mixed outputs agree to float16 precision.
    np.testing.assert_allclose(shipped(x)[0].numpy(), cov.numpy(), atol=2e-2)


def test_float32_config_rewrites_only_mixed_policies():
    config = {"layers": [{"config": {"dtype": {"class_name": "DTypePolicy",
                                               "config": {"name": "mixed_float16"}}}},
                         {"config": {"dtype": {"class_name": "DTypePolicy",
                                               "config": {"name": "float32"}}, "units": 3}}]}
    out = float32_config(config)
    assert out["layers"][0]["config"]["dtype"]["config"]["name"] == "float32"
    assert out["layers"][1] == config["layers"][1]
    assert config["layers"][0]["config"]["dtype"]["config"]["name"] == "mixed_float16"


@pytest.mark.gpu
def test_float16_training_on_a_gpu_uses_mixed_precision_and_loss_scaling(tmp_path, caplog):
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("needs a GPU")
    from det_fixtures import run_main, tiny_data, write_spec
    from tlt.cli import train
    from tlt.io.modelfile import load_keras_model

    data = tiny_data(tmp_path / "data")
    spec = write_spec(tmp_path / "spec.txt", data, epochs=1, extra_replacements=[
        ("cost_scaling { enabled: false", "cost_scaling { enabled: true"),
        ("model_config {", "model_config {\n  training_precision { backend_floatx: FLOAT16 }")])
    with caplog.at_level(logging.WARNING):
        code, _, stderr = run_main(train.main, "detection", "-e", spec, "-r", tmp_path / "r")
    assert code == 0, stderr[-3000:]
    assert "backend_floatx" not in stderr
    model, meta = load_keras_model(tmp_path / "r" / "model.tlt")
    assert meta["training_precision"] == "mixed_float16"
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
