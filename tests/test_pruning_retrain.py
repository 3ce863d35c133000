"""A pruned model file is what retraining loads: narrower graph, same names, trainable as is."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from prune_helpers import CLASSES, build, save_model
from tlt.errors import ModelFileError
from tlt.io.modelfile import load_keras_model
from tlt.pruning import PruneSettings
from tlt.pruning.retrain import check_retrain_compatible, is_pruned
from tlt.stages import prune

KEY = "retrain_key"


@pytest.fixture(scope="module")
def pruned_file(tmp_path_factory):
    base = tmp_path_factory.mktemp("retrain")
    src = save_model(build("alexnet", "classification"), base / "model.tlt", "classification",
                     key=KEY)
    outcome = prune.run(src, str(base / "pruned"), key=KEY,
                        settings=PruneSettings(pruning_threshold=0.99, min_num_filters=8))
    return src, outcome.model_path


def test_pruned_model_loads_narrow_and_trains(pruned_file):
    src, path = pruned_file
    model, meta = load_keras_model(path, key=KEY)
    original, original_meta = load_keras_model(src, key=KEY)
    assert is_pruned(meta) and not is_pruned(original_meta)
    assert model.get_layer("conv2").kernel.shape[-1] < 256
    assert [layer.name for layer in model.layers] == [layer.name for layer in original.layers]
    check_retrain_compatible(model, meta, classes=CLASSES, input_shape=(3, 32, 32), uri=path)

    # One optimisation step changes the weights and keeps every width.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 0], 3)
    before = model.get_layer("conv2").get_weights()[0].copy()
    model.fit(x, y, epochs=1, verbose=0)
    after = model.get_layer("conv2").get_weights()[0]
    assert after.shape == before.shape and not np.allclose(after, before)


def test_retrain_spec_must_keep_the_classes_and_input(pruned_file):
    _, path = pruned_file
    model, meta = load_keras_model(path, key=KEY)
    with pytest.raises(ModelFileError) as err:
        check_retrain_compatible(model, meta, classes=["car", "person"], uri=path)
    assert str(err.value) == (f"{path}: the pruned model was trained on classes ['car', "
                              f"'person', 'bike'], the spec has ['car', 'person']; a pruned "
                              f"model retrains on its own classes")
    with pytest.raises(ModelFileError, match=r"input is \(3, 32, 32\) \(C, H, W\), the spec "
                                             r"asks for \(3, 64, 64\)"):
        check_retrain_compatible(model, meta, classes=CLASSES, input_shape=(3, 64, 64))
