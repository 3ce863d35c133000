"""The classifier: TLT's ResNet-18 figures, the head, training on CPU."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from model_helpers import cfg, counts
from tlt.errors import SpecError
from tlt.models.classifier import build_classifier


def test_resnet18_twenty_classes_matches_tlt_training_log():
    model = build_classifier(cfg(arch="resnet", n_layers=18, input_image_size="3,224,224",
                                 use_bias=True, use_batch_norm=True, all_projections=True), 20)
    # "Total params: 11,558,548 / Trainable params: 11,546,900 / Non-trainable params: 11,648"
    assert counts(model) == (11_558_548, 11_546_900, 11_648)
    assert model.count_params() == 11_558_548
    assert model.layers[0].name == "input_1"
    assert model.input.shape == (None, 3, 224, 224)
    # "predictions (Dense) (None, 20) 10260"
    predictions = model.get_layer("predictions")
    assert predictions.count_params() == 10_260 and model.output.shape == (None, 20)
    assert [layer.name for layer in model.layers[-3:]] == ["avg_pool", "flatten", "predictions"]
    assert model.get_layer("avg_pool").pool_size == (14, 14)
    assert model.name == "resnet18_nopool_bn"


@pytest.mark.parametrize("fields", [
    dict(arch="resnet", n_layers=18, use_pooling=True), dict(arch="vgg", n_layers=16),
    dict(arch="alexnet"), dict(arch="googlenet"), dict(arch="mobilenet_v1"),
    dict(arch="mobilenet_v2"),
], ids=lambda f: f["arch"])
def test_head_is_average_pool_flatten_softmax_on_every_family(fields):
    model = build_classifier(cfg(input_image_size="3,32,32", **fields), 5)
    features = model.get_layer("avg_pool").input
    assert model.get_layer("avg_pool").pool_size == tuple(features.shape[1:3])
    assert model.get_layer("flatten").output.shape == (None, features.shape[-1])
    assert model.get_layer("predictions").count_params() == features.shape[-1] * 5 + 5
    probs = model(np.random.default_rng(3).uniform(size=(3, 3, 32, 32)).astype("float32")).numpy()
    assert probs.shape == (3, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs > 0).all()


def test_dropout_layer_only_when_requested():
    with_dropout = build_classifier(cfg(arch="resnet", n_layers=10, input_image_size="3,32,32",
                                        dropout=0.3), 4)
    assert with_dropout.get_layer("dropout").rate == pytest.approx(0.3)
    assert with_dropout.get_layer("predictions").input is with_dropout.get_layer("dropout").output
    without = build_classifier(cfg(arch="resnet", n_layers=10, input_image_size="3,32,32"), 4)
    assert "dropout" not in [layer.name for layer in without.layers]
    assert counts(with_dropout) == counts(without)


def test_training_step_on_cpu_lowers_loss_and_keeps_frozen_weights():
    # AlexNet keeps the traced training step cheap; backbones' gradients are tested separately.
    keras.utils.set_random_seed(11)  # initial weights independent of the tests run before
    model = build_classifier(cfg(arch="alexnet", input_image_size="3,32,32", freeze_blocks=[1]), 3)
    rng = np.random.default_rng(7)
    images = rng.uniform(size=(12, 3, 32, 32)).astype("float32")
    labels = np.eye(3, dtype="float32")[np.arange(12) % 3]
    conv1_before = model.get_layer("conv1").get_weights()[0].copy()
    head_before = model.get_layer("predictions").get_weights()[0].copy()
    # No XLA: compiling it would dominate this tiny CPU run.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  jit_compile=False)
    first = model.evaluate(images, labels, verbose=0)
    model.fit(images, labels, epochs=8, batch_size=12, verbose=0)
    assert model.evaluate(images, labels, verbose=0) < first
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], conv1_before)
    assert not np.allclose(model.get_layer("predictions").get_weights()[0], head_before)


def test_regularizers_reach_convolutions_and_dense():
    model = build_classifier(cfg(arch="alexnet", input_image_size="3,32,32"), 2,
                             kernel_regularizer=keras.regularizers.L2(1e-4))
    model(np.ones((1, 3, 32, 32), "float32"))
    # One kernel penalty per convolution (5) plus the dense head.
    assert len(model.losses) == 6


def test_fewer_than_two_classes_is_a_spec_error():
    with pytest.raises(SpecError, match="a classifier needs at least 2 classes, got 1"):
        build_classifier(cfg(arch="alexnet", input_image_size="3,32,32"), 1)


def test_invalid_config_error_reaches_the_caller():
    with pytest.raises(SpecError, match=r"^model_config.n_layers: resnet supports 10, 18, 34, 50, "
                                        r"101; got 20$"):
        build_classifier(cfg(arch="resnet", n_layers=20), 10)


def test_saved_model_reloads_with_same_names_and_outputs(tmp_path):
    model = build_classifier(cfg(arch="resnet", n_layers=10, input_image_size="3,32,32"), 3)
    path = tmp_path / "classifier.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]
    images = np.random.default_rng(5).uniform(size=(2, 3, 32, 32)).astype("float32")
    np.testing.assert_allclose(reloaded(images).numpy(), model(images).numpy(), rtol=1e-5)
