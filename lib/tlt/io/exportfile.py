"""Exported models: ONNX graphs as plain ``.onnx`` files or encrypted ``.etlt`` model files.

An export is one ONNX graph plus a metadata dict (task, classes, input dims, preprocessing,
output names, precision, source digest). Both forms carry the metadata with the graph, so the
file alone is enough on the inference machine:

- ``.etlt``: a `tlt.io.modelfile` container (the same authenticated AES-256-GCM scheme as
  ``.tlt``) whose payload is the ONNX bytes and whose metadata is the dict, with
  ``payload_format: "onnx"``. A wrong key fails as `ModelKeyError`.
- ``.onnx``: the graph itself, the dict stored as JSON in its ``metadata_props`` under
  `METADATA_KEY`, readable by any ONNX tool.

Writer and reader live here, below both `tlt.export` (which writes) and `tlt.engines` (which
reads), so neither package imports the other.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from tlt.errors import ModelFileError
from tlt.io import modelfile, storage

__all__ = ["METADATA_KEY", "PAYLOAD_FORMAT", "ExportedModel", "is_encrypted_name", "save_export",
           "load_export", "file_digest"]

METADATA_KEY = "tlt_export"
PAYLOAD_FORMAT = "onnx"


def is_encrypted_name(path_or_uri: str | os.PathLike) -> bool:
    """True when the name asks for an encrypted export (``.etlt``), False for ``.onnx``."""
    return str(path_or_uri).lower().endswith(".etlt")


@dataclass(frozen=True)
class ExportedModel:
    """An export read back: its ONNX graph, metadata and identity.

    Attributes:
        path: where it was read from.
        onnx_bytes: the serialized ONNX graph (without the embedded metadata property).
        metadata: the export's metadata, ``{}`` for an ONNX file made elsewhere.
        digest: `file_digest` of the file as stored, how engines name the export they came from.
    """

    path: str
    onnx_bytes: bytes
    metadata: dict
    digest: str


def file_digest(data: bytes) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def save_export(path_or_uri: str | os.PathLike, onnx_bytes: bytes, metadata: dict,
                key: str | None = None) -> None:
    """Write an export atomically (local path, gs:// or s3://).

    Args:
        path_or_uri: ``*.etlt`` (encrypted with ``key``) or any other name (plain ONNX).
        onnx_bytes: the serialized ONNX graph.
        metadata: JSON-serialisable facts about it.
        key: the model key; required for ``.etlt``, not allowed for plain ONNX.

    Raises:
        ModelFileError: ``.etlt`` without a key, a key for a plain ``.onnx``, or bad metadata.
        StorageError: the destination cannot be written.
    """
    name = str(path_or_uri)
    if is_encrypted_name(name):
        if not key:
            raise ModelFileError(f"{name}: an .etlt export is encrypted: give the key with -k "
                                 f"or {modelfile.KEY_ENV}, or name the output *.onnx")
        meta = dict(metadata, payload_format=PAYLOAD_FORMAT)
        modelfile.save_model_file(name, onnx_bytes, meta, key=key)
        return
    storage.write_bytes(name, _with_metadata(name, onnx_bytes, metadata))


def load_export(path_or_uri: str | os.PathLike, key: str | None = None) -> ExportedModel:
    """Read an export written by `save_export` (or any ONNX file).

    Args:
        path_or_uri: an ``.etlt`` model file or an ONNX file.
        key: the key of an ``.etlt`` (ignored for ONNX).

    Returns:
        The `ExportedModel`.

    Raises:
        ModelKeyError: an encrypted file and no key, or the wrong key.
        ModelFileError: missing, not an export, or corrupt.
    """
    name = str(path_or_uri)
    if not storage.exists(name):
        raise ModelFileError(f"{name}: no such exported model")
    blob = storage.read_bytes(name)
    if blob.startswith(modelfile.MAGIC):
        metadata, payload = modelfile.load_model_file(name, key)
        fmt = metadata.get("payload_format")
        if fmt != PAYLOAD_FORMAT:
            raise ModelFileError(f"{name}: holds a {fmt or 'unknown'!r} payload, not an exported "
                                 "ONNX model (export the .tlt with tlt-export first)")
        return ExportedModel(name, payload, metadata, file_digest(blob))
    payload, metadata = _split_metadata(name, blob)
    return ExportedModel(name, payload, metadata, file_digest(blob))


def _with_metadata(name: str, onnx_bytes: bytes, metadata: dict) -> bytes:
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    try:
        text = json.dumps(metadata, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{name}: export metadata is not JSON-serialisable: {err}") from err
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        METADATA_KEY: text})
    return model.SerializeToString()


def _split_metadata(name: str, blob: bytes) -> tuple[bytes, dict[str, Any]]:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_from_string(blob)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{name}: neither an .etlt model file nor an ONNX graph "
                             f"({err.__class__.__name__})") from None
    if not model.graph.node:
        raise ModelFileError(f"{name}: neither an .etlt model file nor an ONNX graph (no nodes)")
    props = [p for p in model.metadata_props if p.key == METADATA_KEY]
    if not props:
        return blob, {}
    try:
        metadata = json.loads(props[0].value)
    except ValueError as err:
        raise ModelFileError(f"{name}: corrupt {METADATA_KEY} metadata: {err}") from None
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    return model.SerializeToString(), metadata
