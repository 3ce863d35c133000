"""Checks on what a model registry reads: names, version entries, index.json and entry objects.

Everything a registry stores was written by someone else and decides local file names on pull,
so nothing is trusted: names and versions must be plain labels, a ``location`` must be a folder
of its own model (``<name>/<label>``), a file path must stay inside the version folder, and
every field must have its type. A violation is one `RegistryError` line naming the object and
the entry, e.g. ``s3://b/reg/index.json: models.resnet.versions['1/../x']: invalid version
name``.
"""

from __future__ import annotations

import re
from typing import Any

from tlt.errors import RegistryError

__all__ = [
    "FORMAT", "FORMAT_VERSION", "ENTRY_FORMAT", "MODEL_FIELDS", "check_name", "is_name",
    "validate_index", "validate_entry_object", "validate_version",
]

FORMAT = "tlt-model-registry"
FORMAT_VERSION = 1
ENTRY_FORMAT = "tlt-model-registry-version"
#: Catalogue columns kept per model (strings).
MODEL_FIELDS = ("application", "framework", "precision", "description")
# Names end up in object keys and local folder names: no slashes, no leading dot.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RULE = ("use letters, digits, '.', '_' and '-' (at most 128, not starting with '.', "
              "'_' or '-')")


def is_name(value: Any) -> bool:
    """True when ``value`` is a valid model name or version label."""
    return isinstance(value, str) and bool(_NAME_RE.match(value))


def check_name(label: str, value: Any) -> None:
    """Raise RegistryError unless ``value`` is a valid model name or version (``label``)."""
    if not is_name(value):
        raise RegistryError(f"invalid {label} {value!r}: {_NAME_RULE}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _safe_file_path(path: Any) -> bool:
    """A relative POSIX path with no empty, ``.`` or ``..`` part, no backslash, no NUL."""
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path:
        return False
    if path.startswith("/"):
        return False
    parts = path.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def _check_location(where: str, name: str, location: Any) -> None:
    parts = location.split("/") if isinstance(location, str) else []
    if len(parts) != 2 or parts[0] != name or not is_name(parts[1]):
        raise RegistryError(f"{where}: unsafe location {location!r}: expected a folder of "
                            f"this model, '{name}/<label>'")


def _check_file(where: str, i: int, item: Any) -> None:
    if not isinstance(item, dict):
        raise RegistryError(f"{where}: files[{i}] must be an object, got {type(item).__name__}")
    if not _safe_file_path(item.get("path")):
        raise RegistryError(f"{where}: files[{i}]: unsafe file path {item.get('path')!r}: "
                            f"expected a relative path inside the version folder")
    if not _is_count(item.get("size")):
        raise RegistryError(f"{where}: files[{i}].size must be a whole number >= 0, got "
                            f"{item.get('size')!r}")
    if not isinstance(item.get("sha256"), str) or not _SHA256_RE.match(item["sha256"]):
        raise RegistryError(f"{where}: files[{i}].sha256 must be 64 lowercase hex digits, got "
                            f"{item.get('sha256')!r}")


def validate_version(where: str, name: str, version: str, entry: Any) -> None:
    """Check one version entry (location, created, size, files, metadata).

    Args:
        where: the object and entry path used in the message.
        name: the model name (the location must be one of its folders).
        version: the version label.
        entry: the parsed entry.

    Raises:
        RegistryError: naming ``where`` and the first field at fault.
    """
    if not isinstance(entry, dict):
        raise RegistryError(f"{where} must be an object, got {type(entry).__name__}")
    _check_location(where, name, entry.get("location", f"{name}/{version}"))
    files = entry.get("files")
    if not isinstance(files, list):
        raise RegistryError(f"{where}: files must be a list, got {type(files).__name__}")
    for i, item in enumerate(files):
        _check_file(where, i, item)
    if "size" in entry and not _is_count(entry["size"]):
        raise RegistryError(f"{where}: size must be a whole number >= 0, got {entry['size']!r}")
    if not isinstance(entry.get("created", ""), str):
        raise RegistryError(f"{where}: created must be a string, got {entry['created']!r}")
    if not isinstance(entry.get("metadata") or {}, dict):
        raise RegistryError(f"{where}: metadata must be an object, got "
                            f"{type(entry['metadata']).__name__}")


def _check_model_fields(where: str, model: dict) -> None:
    for key in MODEL_FIELDS:
        if key in model and not isinstance(model[key], str):
            raise RegistryError(f"{where}: {key} must be a string, got {model[key]!r}")


def _check_format_version(where: str, value: Any, expected: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool)):
        raise RegistryError(f"{where}: format_version must be a whole number, got {value!r}")
    if value > expected:
        raise RegistryError(f"{where} has format_version {value}; this release reads "
                            f"{expected}")


def validate_index(where: str, index: Any) -> dict:
    """Check a parsed ``index.json`` throughout and return it.

    Raises:
        RegistryError: wrong shape or types, unsafe names, versions, locations or file paths.
    """
    if not isinstance(index, dict) or not isinstance(index.get("models"), dict):
        raise RegistryError(f"{where} is malformed: expected an object with a 'models' object")
    _check_format_version(where, index.get("format_version", FORMAT_VERSION), FORMAT_VERSION)
    for name, model in index["models"].items():
        at = f"{where}: models[{name!r}]"
        if not is_name(name):
            raise RegistryError(f"{at}: invalid model name: {_NAME_RULE}")
        if not isinstance(model, dict) or not isinstance(model.get("versions"), dict):
            raise RegistryError(f"{at} is malformed: expected an object with a 'versions' object")
        _check_model_fields(at, model)
        for version, entry in model["versions"].items():
            at_version = f"{at}.versions[{version!r}]"
            if not is_name(version):
                raise RegistryError(f"{at_version}: invalid version name: {_NAME_RULE}")
            validate_version(at_version, name, version, entry)
    return index


def validate_entry_object(where: str, name: str, version: str, obj: Any) -> dict:
    """Check one per-version entry object (``_versions/<name>/<version>.json``) and return it.

    Its ``name`` and ``version`` must match the object's key, so an entry cannot claim another
    model's slot.

    Raises:
        RegistryError: wrong shape or types, or a mismatch with the key.
    """
    if not isinstance(obj, dict) or obj.get("format") != ENTRY_FORMAT:
        raise RegistryError(f"{where} is malformed: expected a '{ENTRY_FORMAT}' object")
    _check_format_version(where, obj.get("format_version"), FORMAT_VERSION)
    if obj.get("name") != name or obj.get("version") != version:
        raise RegistryError(f"{where}: names {obj.get('name')!r} version "
                            f"{obj.get('version')!r}, but its key says {name!r} {version!r}")
    if not isinstance(obj.get("model"), dict):
        raise RegistryError(f"{where}: model must be an object")
    _check_model_fields(where, obj["model"])
    validate_version(where, name, version, obj.get("entry"))
    return obj

