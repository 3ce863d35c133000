"""Model files: plain and encrypted round trips, tamper detection, keys, Keras models."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tlt.errors import ModelFileError, ModelKeyError
from tlt.io import modelfile
from tlt.io.modelfile import (
    MAGIC,
    load_keras_model,
    load_model_file,
    read_model_header,
    read_model_metadata,
    resolve_key,
    save_keras_model,
    save_model_file,
)

PAYLOAD = bytes(range(256)) * 4 + b"WEIGHTS-MARKER"
META = {"task": "classification", "arch": "resnet", "classes": ["car", "person"],
        "input_dims": [3, 32, 32], "spec": "model_config { arch: 'resnet' }"}


@pytest.fixture
def cheap_scrypt(monkeypatch):
    """A cheap scrypt cost so tests that decrypt hundreds of times stay fast (stored per file)."""
    monkeypatch.setattr(modelfile, "_SCRYPT_N", 2**10)


def test_plain_round_trip_says_not_encrypted(tmp_path):
    path = tmp_path / "model.tlt"
    save_model_file(path, PAYLOAD, META)

    metadata, payload = load_model_file(path)
    assert payload == PAYLOAD
    assert metadata["encrypted"] is False
    assert {k: metadata[k] for k in META} == META
    assert metadata["tlt_version"] == "0.1.0"
    assert metadata["created"].endswith("+00:00")
    assert read_model_header(path)["encrypted"] is False
    raw = path.read_bytes()
    assert raw.startswith(MAGIC) and b"WEIGHTS-MARKER" in raw


def test_encrypted_round_trip_hides_metadata_and_payload(tmp_path, cheap_scrypt):
    path = tmp_path / "model.etlt"
    save_model_file(path, PAYLOAD, META, key="tlt_encode")

    raw = path.read_bytes()
    assert b"WEIGHTS-MARKER" not in raw and b"classification" not in raw
    header = read_model_header(path)
    assert header["encrypted"] is True
    assert header["cipher"] == "AES-256-GCM" and header["kdf"] == "scrypt"
    assert header["n"] == 2**10 and header["r"] == 8 and header["p"] == 1
    assert len(bytes.fromhex(header["salt"])) == 16 and len(bytes.fromhex(header["nonce"])) == 12

    metadata, payload = load_model_file(path, key="tlt_encode")
    assert payload == PAYLOAD
    assert metadata["encrypted"] is True and metadata["classes"] == ["car", "person"]
    assert read_model_metadata(path, key="tlt_encode") == metadata


def test_same_inputs_encrypt_differently(tmp_path, cheap_scrypt):
    # A random salt and nonce per file: two saves never share key stream.
    save_model_file(tmp_path / "a.tlt", PAYLOAD, META, key="k")
    save_model_file(tmp_path / "b.tlt", PAYLOAD, META, key="k")
    a = read_model_header(tmp_path / "a.tlt")
    b = read_model_header(tmp_path / "b.tlt")
    assert a["salt"] != b["salt"] and a["nonce"] != b["nonce"]


def test_wrong_key_is_one_clear_error(tmp_path, cheap_scrypt):
    path = tmp_path / "model.tlt"
    save_model_file(path, PAYLOAD, META, key="right")
    with pytest.raises(ModelKeyError) as err:
        load_model_file(path, key="wrong")
    assert str(err.value) == f"{path}: cannot decrypt: wrong key or the file is corrupt"


def test_encrypted_without_key(tmp_path, cheap_scrypt):
    path = tmp_path / "model.tlt"
    save_model_file(path, PAYLOAD, META, key="right")
    with pytest.raises(ModelKeyError) as err:
        load_model_file(path)
    assert str(err.value) == f"{path} is encrypted: pass the key with -k or TLT_KEY"


def test_plain_file_with_key_is_refused(tmp_path):
    """A keyed user must not be handed a swapped plain model: the key cannot vouch for it."""
    path = tmp_path / "model.tlt"
    save_model_file(path, PAYLOAD, META)
    with pytest.raises(ModelKeyError) as err:
        load_model_file(path, key="unneeded")
    assert str(err.value) == f"{path} is not encrypted; it cannot be authenticated with this key"
    for no_key in (None, ""):  # an empty -k (an unset shell variable) is no key
        metadata, payload = load_model_file(path, key=no_key)
        assert payload == PAYLOAD and metadata["encrypted"] is False


def _flipped(raw: bytes, pos: int, mask: int) -> bytes:
    out = bytearray(raw)
    out[pos] ^= mask
    return bytes(out)


@pytest.mark.parametrize("mask", [0x01, 0x20, 0xFF])
def test_every_flipped_byte_of_encrypted_file_is_detected(tmp_path, cheap_scrypt, mask):
    path = tmp_path / "small.tlt"
    save_model_file(path, b"tiny-weights", {"task": "detection"}, key="k3y")
    raw = path.read_bytes()
    # Covers magic, version, header length, the JSON header (salt, nonce, scrypt n/r/p, sizes),
    # the ciphertext and the GCM tag at the end.
    kinds = set()
    for pos in range(len(raw)):
        bad = tmp_path / "bad.tlt"
        bad.write_bytes(_flipped(raw, pos, mask))
        with pytest.raises(ModelFileError) as err:
            load_model_file(bad, key="k3y")
        kinds.add(type(err.value))
    assert kinds == {ModelFileError, ModelKeyError}
    assert load_model_file(path, key="k3y")[1] == b"tiny-weights"


@pytest.mark.parametrize("mask", [0x01, 0x20, 0xFF])
def test_every_flipped_byte_of_plain_file_is_detected(tmp_path, mask):
    path = tmp_path / "small.tlt"
    save_model_file(path, b"tiny-weights", {"task": "detection"})
    raw = path.read_bytes()
    for pos in range(len(raw)):
        bad = tmp_path / "bad.tlt"
        bad.write_bytes(_flipped(raw, pos, mask))
        with pytest.raises(ModelFileError) as err:
            load_model_file(bad)
        assert not isinstance(err.value, ModelKeyError)


def test_flipped_ciphertext_byte_message(tmp_path, cheap_scrypt):
    path = tmp_path / "model.tlt"
    save_model_file(path, PAYLOAD, META, key="k")
    path.write_bytes(_flipped(path.read_bytes(), -20, 0x04))
    with pytest.raises(ModelKeyError, match="cannot decrypt: wrong key or the file is corrupt"):
        load_model_file(path, key="k")


@pytest.mark.parametrize("encrypted", [False, True])
def test_truncated_file(tmp_path, cheap_scrypt, encrypted):
    path = tmp_path / "model.tlt"
    save_model_file(path, PAYLOAD, META, key="k" if encrypted else None)
    raw = path.read_bytes()
    hdr_end = 13 + struct.unpack(">I", raw[9:13])[0]
    cut = tmp_path / "cut.tlt"
    for size in (0, 4, 8, 12, hdr_end - 5, hdr_end, len(raw) // 2, len(raw) - 1):
        cut.write_bytes(raw[:size])
        with pytest.raises(ModelFileError) as err:
            load_model_file(cut, key="k" if encrypted else None)
        assert not isinstance(err.value, ModelKeyError), size
    cut.write_bytes(raw[:-1])
    with pytest.raises(ModelFileError, match=r"truncated: expected \d+ body bytes, found \d+"):
        load_model_file(cut, key="k")


def test_trailing_garbage_rejected(tmp_path):
    path = tmp_path / "model.tlt"
    save_model_file(path, PAYLOAD, META)
    path.write_bytes(path.read_bytes() + b"xx")
    with pytest.raises(ModelFileError, match="2 unexpected bytes after the body"):
        load_model_file(path)


def test_not_a_model_file_and_missing_file(tmp_path):
    other = tmp_path / "weights.h5"
    other.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ModelFileError) as err:
        load_model_file(other)
    assert str(err.value) == f"{other}: not a TLT model file (bad magic bytes)"
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model_file(tmp_path / "absent.tlt")


def test_future_format_version_is_named(tmp_path):
    path = tmp_path / "model.tlt"
    save_model_file(path, PAYLOAD, META)
    raw = bytearray(path.read_bytes())
    raw[8] = 7
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="unsupported model file format version 7"):
        load_model_file(path)


def test_oversized_scrypt_parameters_are_refused(tmp_path):
    # A hand-made header asking for 2**24 * 8 * 128 bytes of scrypt memory must not be obeyed.
    header = json.dumps({"encrypted": True, "cipher": "AES-256-GCM", "kdf": "scrypt",
                         "salt": "00" * 16, "nonce": "00" * 12, "n": 2**24, "r": 8, "p": 1,
                         "body_size": 20}).encode()
    path = tmp_path / "evil.tlt"
    path.write_bytes(MAGIC + bytes([1]) + struct.pack(">I", len(header)) + header + b"\0" * 20)
    with pytest.raises(ModelFileError, match="encryption parameters"):
        load_model_file(path, key="k")


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(ModelFileError, match="metadata is not JSON-serialisable"):
        save_model_file(tmp_path / "m.tlt", b"x", {"when": object()})
    assert not (tmp_path / "m.tlt").exists()


def test_resolve_key_and_env_fallback(tmp_path, monkeypatch, cheap_scrypt):
    monkeypatch.delenv("TLT_KEY", raising=False)
    assert resolve_key(None) is None
    assert resolve_key("") is None
    monkeypatch.setenv("TLT_KEY", "from-env")
    assert resolve_key(None) == "from-env"
    assert resolve_key("explicit") == "explicit"

    path = tmp_path / "model.tlt"
    save_model_file(path, PAYLOAD, META, key=resolve_key(None))
    assert load_model_file(path, key="from-env")[1] == PAYLOAD
    with pytest.raises(ModelKeyError):
        load_model_file(path, key=resolve_key("explicit"))


def test_keras_model_round_trip_encrypted(tmp_path, cheap_scrypt):
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    expected = model.predict(x, verbose=0)

    path = tmp_path / "classifier.tlt"
    save_keras_model(model, path, {"task": "classification", "classes": ["a", "b"]}, key="k")
    loaded, metadata = load_keras_model(path, key="k")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert metadata["payload_format"] == "keras" and metadata["classes"] == ["a", "b"]
    assert [w.shape for w in loaded.get_weights()] == [(6, 5), (5,), (5, 2), (2,)]

    with pytest.raises(ModelKeyError):
        load_keras_model(path, key="nope")
    save_model_file(tmp_path / "onnx.etlt", b"onnx", {"payload_format": "onnx"})
    with pytest.raises(ModelFileError, match="holds a 'onnx' payload, not a Keras model"):
        load_keras_model(tmp_path / "onnx.etlt")


def test_encrypted_model_file_on_s3(s3_bucket, cheap_scrypt):
    uri = f"{s3_bucket}/models/model.etlt"
    save_model_file(uri, PAYLOAD, META, key="k")
    assert read_model_header(uri)["encrypted"] is True
    assert load_model_file(uri, key="k")[1] == PAYLOAD
    with pytest.raises(ModelKeyError, match=f"^{uri}: cannot decrypt"):
        load_model_file(uri, key="other")
    with pytest.raises(ModelFileError, match=f"^{s3_bucket}/models/absent.tlt: no such model"):
        load_model_file(f"{s3_bucket}/models/absent.tlt")
