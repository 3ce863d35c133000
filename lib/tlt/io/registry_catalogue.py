"""The catalogue of a model registry: one immutable entry object per version, plus index.json.

Layout under the registry root::

    _versions/<name>/<version>.json    one object per published version (the commit record)
    index.json                         the whole catalogue: written by older releases, and
                                       rewritten after every publish as a cache for them

A publish commits by *creating* its entry object (`storage.write_new`: a create-only write
that the store arbitrates), so publishers never read-modify-write a shared object: two
publishes of different versions both land, and of two publishes of the same version exactly one
wins. The catalogue a reader sees is ``index.json`` with every entry object laid over it
(entries win), so registries written by older releases stay readable.
"""

from __future__ import annotations

import json
from typing import Any

from tlt.errors import RegistryError
from tlt.io import storage
from tlt.io._storage_common import run_parallel
from tlt.io.registry_index import (
    ENTRY_FORMAT, FORMAT, FORMAT_VERSION, MODEL_FIELDS, is_name, validate_entry_object,
    validate_index,
)

__all__ = ["INDEX_NAME", "ENTRIES_DIR", "entry_uri", "load_catalogue", "commit_entry",
           "write_index_cache"]

INDEX_NAME = "index.json"
# Model names start with a letter or digit, so these folders never clash with a model's.
ENTRIES_DIR = "_versions"
_ENTRY_SUFFIX = ".json"


def entry_uri(root: str, name: str, version: str) -> str:
    """Where the entry object of ``name`` version ``version`` lives."""
    return storage.join(root, ENTRIES_DIR, name, version + _ENTRY_SUFFIX)


def _empty() -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "models": {}}


def _parse_json(uri: str) -> Any:
    try:
        return json.loads(storage.read_text(uri))
    except ValueError as err:
        raise RegistryError(f"{uri} is not valid JSON: {err}") from None


def _entry_keys(root: str) -> list[tuple[str, str, str]]:
    """(uri, name, version) of every entry object; dotfiles (local temporaries) are skipped."""
    folder = storage.join(root, ENTRIES_DIR)
    found = []
    for uri in storage.list_files(folder, recursive=True):
        rel = uri[len(folder):].lstrip("/").replace("\\", "/")
        parts = rel.split("/")
        if parts[-1].startswith("."):
            continue
        if (len(parts) != 2 or not parts[1].endswith(_ENTRY_SUFFIX)
                or not is_name(parts[0]) or not is_name(parts[1][:-len(_ENTRY_SUFFIX)])):
            raise RegistryError(f"{uri}: unexpected object in the registry's {ENTRIES_DIR}/ "
                                f"folder (expected {ENTRIES_DIR}/<name>/<version>.json)")
        found.append((uri, parts[0], parts[1][:-len(_ENTRY_SUFFIX)]))
    return found


def _read_entries(root: str) -> list[dict]:
    keys = _entry_keys(root)
    parsed = run_parallel(lambda key: _parse_json(key[0]), keys, desc="read registry")
    return [validate_entry_object(uri, name, version, obj)
            for (uri, name, version), obj in zip(keys, parsed)]


def load_catalogue(root: str, required: bool) -> dict:
    """The registry's catalogue, shaped like index.json (``{"models": {name: {...}}}``).

    Args:
        root: registry root.
        required: raise when the registry has neither index.json nor entry objects; otherwise
            return an empty catalogue (a registry about to be created).

    Raises:
        RegistryError: no registry (when required), or a malformed index.json or entry.
    """
    index_uri = storage.join(root, INDEX_NAME)
    has_index = storage.exists(index_uri)
    catalogue = validate_index(index_uri, _parse_json(index_uri)) if has_index else _empty()
    entries = _read_entries(root)
    if not has_index and not entries and required:
        raise RegistryError(f"registry {root} has no {INDEX_NAME} (is this a registry?)")
    # Oldest first, so each model's catalogue fields end as its newest publish set them.
    for obj in sorted(entries, key=lambda o: str(o["entry"].get("created", ""))):
        model = catalogue["models"].setdefault(obj["name"], {"versions": {}})
        model.update({k: obj["model"][k] for k in MODEL_FIELDS if k in obj["model"]})
        model["versions"][obj["version"]] = obj["entry"]
    return catalogue


def commit_entry(root: str, name: str, version: str, model_fields: dict, entry: dict, *,
                 replace: bool) -> bool:
    """Publish one version's entry object: the step that makes the version visible.

    Args:
        root: registry root.
        name: model name.
        version: version label.
        model_fields: the model's catalogue columns (application, framework ...).
        entry: the version entry (location, created, size, files, metadata).
        replace: overwrite an existing entry (``publish(overwrite=True)``); otherwise the write
            is create-only.

    Returns:
        False when ``replace`` is off and the version already has an entry (nothing written).
    """
    obj = {"format": ENTRY_FORMAT, "format_version": FORMAT_VERSION, "name": name,
           "version": version, "model": dict(model_fields), "entry": entry}
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")
    uri = entry_uri(root, name, version)
    if replace:
        storage.write_bytes(uri, data)
        return True
    if storage.write_new(uri, data):
        return True
    # A retried write whose first attempt did land (its answer was lost) finds its own entry.
    held = _parse_json(uri)
    return isinstance(held, dict) and held.get("entry", {}).get("location") == entry["location"]


def write_index_cache(root: str, catalogue: dict) -> None:
    """Write ``catalogue`` as index.json, for readers of older releases.

    Nothing of this release trusts index.json over the entry objects, so a racing rewrite that
    misses a newer version only leaves the cache stale until the next publish.

    Raises:
        StorageError: the write failed.
    """
    text = json.dumps(catalogue, indent=2, sort_keys=True) + "\n"
    storage.write_text(storage.join(root, INDEX_NAME), text)
