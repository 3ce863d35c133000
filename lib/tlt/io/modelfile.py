"""Model files (.tlt, .etlt): a small versioned container, optionally encrypted with a key.

Layout (all integers big-endian)::

    magic      8 bytes   b"\\x89TLTMDL\\n"
    version    1 byte    container format version (1)
    hdr_len    4 bytes   length of the header
    header     hdr_len   UTF-8 JSON, never encrypted: {"encrypted": bool, "body_size": int, ...}
    body       body_size the plain body, or its AES-256-GCM ciphertext (16-byte tag at the end)

The plain body is ``meta_len (4 bytes) + metadata JSON + payload``, so metadata and weights are
encrypted together. An encrypted header also holds the scrypt parameters (salt, n, r, p) and the
GCM nonce; the whole prefix (magic to header) is the GCM associated data, so flipping any byte of
the file makes decryption fail instead of yielding garbage weights. A plain header holds the
SHA-256 of the body for the same reason.

The key is the user's ``-k`` string (TLT's "encode key"); `resolve_key` adds the ``TLT_KEY``
environment variable as a fallback for CLIs and components, which get secrets from the env. A
key given for a plain file is an error, not a warning: whoever holds a key expects the model to
be authenticated by it, and a swapped plain file must not pass.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import os
import secrets
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from tlt import __version__
from tlt.errors import ModelFileError, ModelKeyError
from tlt.io import storage

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "KEY_ENV",
    "save_model_file",
    "load_model_file",
    "read_model_metadata",
    "read_model_header",
    "resolve_key",
    "save_keras_model",
    "load_keras_model",
    "load_keras_file",
]

_LOG = logging.getLogger(__name__)

MAGIC = b"\x89TLTMDL\n"
FORMAT_VERSION = 1
KEY_ENV = "TLT_KEY"

_PREFIX = struct.Struct(">8sBI")  # magic, format version, header length
_META_LEN = struct.Struct(">I")
_MAX_HEADER = 64 * 1024
# scrypt cost: ~32 MiB and ~0.1 s per derivation; stored per file so it can be raised later.
_SCRYPT_N = 2**15
_SCRYPT_R = 8
_SCRYPT_P = 1
# Bounds on header-supplied scrypt parameters, so a corrupt header cannot ask for gigabytes.
_MAX_SCRYPT_MEM = 256 << 20
_SALT_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16


def resolve_key(key: str | None) -> str | None:
    """Return the model key to use: ``key`` if given, else ``$TLT_KEY``, else None.

    An empty string counts as not given (a shell's ``-k $UNSET_VAR`` expands to nothing).

    Args:
        key: the key from a ``-k`` flag or a caller, or None.

    Returns:
        The key, or None when neither ``key`` nor ``TLT_KEY`` is set.
    """
    if key:
        return key
    return os.environ.get(KEY_ENV) or None


def save_model_file(path_or_uri: str | os.PathLike, payload: bytes, metadata: dict,
                    key: str | None = None) -> None:
    """Write a model file atomically to a local path, gs:// or s3:// URI.

    Args:
        path_or_uri: destination (.tlt, .etlt or any name).
        payload: the model bytes (a zipped .keras model, an ONNX file ...).
        metadata: JSON-serialisable facts about the model (task, arch, classes ...). A copy is
            stored with ``encrypted``, and ``tlt_version`` and ``created`` unless given.
        key: encrypt with this key (AES-256-GCM, scrypt-derived); None stores the file plain.

    Raises:
        ModelFileError: metadata is not a JSON object / not serialisable.
        StorageError: the destination cannot be written.
    """
    name = str(path_or_uri)
    blob = _encode(name, bytes(payload), metadata, key)
    storage.write_bytes(name, blob)
    _LOG.debug("wrote %s (%d bytes, %s)", name, len(blob), "encrypted" if key else "plain")


def load_model_file(path_or_uri: str | os.PathLike, key: str | None = None) -> tuple[dict, bytes]:
    """Read and (when encrypted) decrypt a model file.

    Args:
        path_or_uri: local path, gs:// or s3:// URI.
        key: the key it was saved with; None (or empty) for a plain file.

    Returns:
        ``(metadata, payload)``.

    Raises:
        ModelKeyError: the file is encrypted and no key was given, the key is wrong, the file
            was altered, or a key was given for a plain file (which it cannot authenticate).
        ModelFileError: not a model file, unsupported version, truncated or corrupt.
        StorageError: the file cannot be read.
    """
    name = str(path_or_uri)
    return _decode(name, _read(name), key)


def read_model_metadata(path_or_uri: str | os.PathLike, key: str | None = None) -> dict:
    """Return only the metadata of a model file (an encrypted one still needs its key).

    Raises:
        ModelKeyError, ModelFileError, StorageError: as `load_model_file`.
    """
    return load_model_file(path_or_uri, key)[0]


def read_model_header(path_or_uri: str | os.PathLike) -> dict:
    """Return the plain header of a model file (no key needed): ``encrypted``, cipher parameters.

    Raises:
        ModelFileError: not a model file, unsupported version or corrupt header.
        StorageError: the file cannot be read.
    """
    name = str(path_or_uri)
    header, _, _ = _split(name, _read(name))
    return header


def save_keras_model(model: Any, path_or_uri: str | os.PathLike, metadata: dict,
                     key: str | None = None) -> None:
    """Save a Keras model as a model file (its native .keras archive is the payload).

    Args:
        model: a ``keras.Model``.
        path_or_uri: destination (local path, gs:// or s3://).
        metadata: facts stored with it; ``payload_format`` is set to ``"keras"``.
        key: encryption key, or None for a plain file.
    """
    with tempfile.TemporaryDirectory(prefix="tlt-keras-") as tmp:
        local = Path(tmp) / "model.keras"
        model.save(local)
        payload = local.read_bytes()
    meta = dict(metadata)
    meta["payload_format"] = "keras"
    save_model_file(path_or_uri, payload, meta, key)


def load_keras_model(path_or_uri: str | os.PathLike, key: str | None = None, compile: bool = False,
                     custom_objects: dict | None = None) -> tuple[Any, dict]:
    """Load a Keras model saved with `save_keras_model` (a .tlt/.etlt model file).

    Args:
        path_or_uri: the model file.
        key: its key, or None for a plain file.
        compile: restore the optimizer and loss too (off: inference and fine-tuning set their own).
        custom_objects: passed to ``keras.models.load_model`` for project-specific layers.

    Returns:
        ``(model, metadata)``.

    Raises:
        ModelKeyError, ModelFileError, StorageError: as `load_model_file`, and ModelFileError
        naming ``path_or_uri`` when the payload is not a Keras model.
    """
    name = str(path_or_uri)
    metadata, payload = load_model_file(name, key)
    fmt = metadata.get("payload_format", "keras")
    if fmt != "keras":
        raise ModelFileError(f"{name}: holds a {fmt!r} payload, not a Keras model")
    expected = "expected a Keras model (a .keras zip archive) inside the model file"
    return _load_keras_bytes(name, payload, expected, compile, custom_objects), metadata


def load_keras_file(path_or_uri: str | os.PathLike, compile: bool = False,
                    custom_objects: dict | None = None) -> Any:
    """Load a native Keras ``.keras`` file (e.g. a pretrained model) from a path or URI.

    Args:
        path_or_uri: local path, gs:// or s3:// URI of the ``.keras`` file.
        compile: restore the optimizer and loss too.
        custom_objects: passed to ``keras.models.load_model``.

    Returns:
        The ``keras.Model``.

    Raises:
        ModelFileError: the file is missing, or is not a Keras archive Keras can load (the
            message names ``path_or_uri``, never a temporary copy).
        StorageError: the file cannot be read.
    """
    name = str(path_or_uri)
    expected = "expected a Keras model file (a .keras zip archive)"
    return _load_keras_bytes(name, _read(name), expected, compile, custom_objects)


def _keras_problem(blob: bytes) -> str | None:
    """Why ``blob`` is not a ``.keras`` archive, or None when it looks like one."""
    if not zipfile.is_zipfile(io.BytesIO(blob)):
        return f"{len(blob)} bytes that are not a zip archive"
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as err:
        return f"a damaged zip archive ({err})"
    if "config.json" not in names:
        return "a zip archive without the config.json of a Keras model"
    return None


def _load_keras_bytes(name: str, blob: bytes, expected: str, compile: bool,
                      custom_objects: dict | None) -> Any:
    """Load Keras archive bytes; every failure is a ModelFileError about ``name``."""
    import keras  # imported here: keeps `tlt.io.modelfile` cheap for callers that never load one

    problem = _keras_problem(blob)
    if problem:
        raise ModelFileError(f"{name}: {expected}; found {problem}")
    with tempfile.TemporaryDirectory(prefix="tlt-keras-") as tmp:
        local = Path(tmp) / "model.keras"
        local.write_bytes(blob)
        try:
            return keras.models.load_model(local, custom_objects=custom_objects, compile=compile)
        except Exception as err:  # Keras raises many types; the user needs one clear line
            detail = " ".join(str(err).replace(str(local), name).split())
            raise ModelFileError(f"{name}: {expected}, but Keras cannot load it: "
                                 f"{detail}") from err


# --------------------------------------------------------------------------------------------
# Encoding


def _encode(name: str, payload: bytes, metadata: dict, key: str | None) -> bytes:
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{name}: metadata must be a dict, got {type(metadata).__name__}")
    meta = dict(metadata)
    meta.setdefault("tlt_version", __version__)
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta["encrypted"] = bool(key)
    try:
        meta_bytes = json.dumps(meta, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{name}: metadata is not JSON-serialisable: {err}") from err
    body = _META_LEN.pack(len(meta_bytes)) + meta_bytes + payload

    if not key:
        header = {"encrypted": False, "body_size": len(body),
                  "sha256": hashlib.sha256(body).hexdigest()}
        return _prefix(header) + body

    salt = secrets.token_bytes(_SALT_BYTES)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    header = {"encrypted": True, "cipher": "AES-256-GCM", "kdf": "scrypt",
              "salt": salt.hex(), "nonce": nonce.hex(),
              "n": _SCRYPT_N, "r": _SCRYPT_R, "p": _SCRYPT_P,
              "body_size": len(body) + _TAG_BYTES}
    prefix = _prefix(header)
    aead = _aesgcm(_derive(key, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P))
    return prefix + aead.encrypt(nonce, body, prefix)


def _prefix(header: dict) -> bytes:
    raw = json.dumps(header, sort_keys=True).encode("utf-8")
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(raw)) + raw


# --------------------------------------------------------------------------------------------
# Decoding


def _read(name: str) -> bytes:
    if not storage.exists(name):
        raise ModelFileError(f"{name}: no such model file")
    return storage.read_bytes(name)


def _split(name: str, blob: bytes) -> tuple[dict, bytes, bytes]:
    """Check the prefix; return (header, prefix bytes, body bytes)."""
    if len(blob) < _PREFIX.size or not blob.startswith(MAGIC):
        raise ModelFileError(f"{name}: not a TLT model file (bad magic bytes)")
    _, version, hdr_len = _PREFIX.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{name}: unsupported model file format version {version} "
                             f"(this release reads version {FORMAT_VERSION})")
    end = _PREFIX.size + hdr_len
    if hdr_len > _MAX_HEADER or end > len(blob):
        raise ModelFileError(f"{name}: truncated or corrupt model file header")
    try:
        header = json.loads(blob[_PREFIX.size:end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelFileError(f"{name}: corrupt model file header") from err
    if (not isinstance(header, dict) or not isinstance(header.get("encrypted"), bool)
            or not _is_int(header.get("body_size"))):
        raise ModelFileError(f"{name}: corrupt model file header")
    body = blob[end:]
    if len(body) < header["body_size"]:
        raise ModelFileError(f"{name}: truncated: expected {header['body_size']} body bytes, "
                             f"found {len(body)}")
    if len(body) > header["body_size"]:
        raise ModelFileError(f"{name}: corrupt: {len(body) - header['body_size']} unexpected "
                             f"bytes after the body")
    return header, blob[:end], body


def _decode(name: str, blob: bytes, key: str | None) -> tuple[dict, bytes]:
    header, prefix, body = _split(name, blob)
    if not header["encrypted"]:
        if key:
            raise ModelKeyError(f"{name} is not encrypted; it cannot be authenticated with "
                                f"this key")
        if header.get("sha256") != hashlib.sha256(body).hexdigest():
            raise ModelFileError(f"{name}: checksum mismatch: the file is corrupt")
        return _unpack_body(name, body)

    if not key:
        raise ModelKeyError(f"{name} is encrypted: pass the key with -k or {KEY_ENV}")
    salt, nonce, n, r, p = _cipher_params(name, header)
    from cryptography.exceptions import InvalidTag

    try:
        plain = _aesgcm(_derive(key, salt, n, r, p)).decrypt(nonce, body, prefix)
    except InvalidTag:
        raise ModelKeyError(f"{name}: cannot decrypt: wrong key or the file is corrupt") from None
    return _unpack_body(name, plain)


def _cipher_params(name: str, header: dict) -> tuple[bytes, bytes, int, int, int]:
    corrupt = ModelFileError(f"{name}: corrupt model file header (encryption parameters)")
    if header.get("cipher") != "AES-256-GCM" or header.get("kdf") != "scrypt":
        raise corrupt
    try:
        salt = bytes.fromhex(header["salt"])
        nonce = bytes.fromhex(header["nonce"])
    except (KeyError, TypeError, ValueError):
        raise corrupt from None
    n, r, p = header.get("n"), header.get("r"), header.get("p")
    if not (_is_int(n) and _is_int(r) and _is_int(p)):
        raise corrupt
    if (n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16
            or 128 * n * r > _MAX_SCRYPT_MEM or len(nonce) != _NONCE_BYTES or not salt):
        raise corrupt
    return salt, nonce, n, r, p


def _unpack_body(name: str, body: bytes) -> tuple[dict, bytes]:
    if len(body) < _META_LEN.size:
        raise ModelFileError(f"{name}: corrupt model file body")
    (meta_len,) = _META_LEN.unpack_from(body)
    end = _META_LEN.size + meta_len
    if end > len(body):
        raise ModelFileError(f"{name}: corrupt model file body")
    try:
        metadata = json.loads(body[_META_LEN.size:end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelFileError(f"{name}: corrupt model metadata") from err
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{name}: corrupt model metadata")
    return metadata, body[end:]


# --------------------------------------------------------------------------------------------
# Crypto primitives


def _derive(key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(key.encode("utf-8"))


def _aesgcm(derived: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(derived)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
