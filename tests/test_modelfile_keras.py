"""Keras payloads and .keras files that are not Keras models: one ModelFileError naming the
user's file and what was expected, never Keras's "File not found" of a temporary copy."""

from __future__ import annotations

import io
import zipfile

import pytest

from tlt.errors import ModelFileError
from tlt.io.modelfile import load_keras_file, load_keras_model, save_model_file


def _zip(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tiny_model():
    import keras

    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


@pytest.mark.parametrize("payload, found", [
    (b"not a model at all", "found 18 bytes that are not a zip archive"),
    (_zip(**{"weights.h5": b"x"}), "found a zip archive without the config.json of a Keras model"),
])
def test_model_file_with_a_payload_that_is_not_keras(tmp_path, payload, found):
    path = tmp_path / "model.tlt"
    save_model_file(path, payload, {"payload_format": "keras"})
    with pytest.raises(ModelFileError) as err:
        load_keras_model(path)
    assert str(err.value) == (f"{path}: expected a Keras model (a .keras zip archive) inside "
                              f"the model file; {found}")


def test_model_file_whose_keras_archive_is_broken(tmp_path):
    path = tmp_path / "model.tlt"
    save_model_file(path, _zip(**{"config.json": b"{not json"}), {"payload_format": "keras"})
    with pytest.raises(ModelFileError) as err:
        load_keras_model(path)
    message = str(err.value)
    assert message.startswith(f"{path}: expected a Keras model (a .keras zip archive) inside "
                              f"the model file, but Keras cannot load it: ")
    assert "tlt-keras-" not in message and "\n" not in message  # no temporary path


@pytest.mark.parametrize("content, found", [
    (b"\x89PNG\r\n\x1a\n fake", "found 13 bytes that are not a zip archive"),
    (_zip(**{"readme.txt": b"hi"}), "found a zip archive without the config.json of a Keras model"),
])
def test_keras_file_that_is_not_keras(tmp_path, content, found):
    path = tmp_path / "pretrained.keras"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as err:
        load_keras_file(path)
    assert str(err.value) == (f"{path}: expected a Keras model file (a .keras zip archive); "
                              f"{found}")


def test_keras_file_round_trip_and_missing(tmp_path, s3_bucket):
    import numpy as np

    from tlt.io import storage

    model = _tiny_model()
    local = tmp_path / "pretrained.keras"
    model.save(local)
    uri = f"{s3_bucket}/pre/pretrained.keras"
    storage.upload_file(local, uri)
    loaded = load_keras_file(uri)
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])
    with pytest.raises(ModelFileError, match=f"^{tmp_path / 'absent.keras'}: no such model file$"):
        load_keras_file(tmp_path / "absent.keras")
