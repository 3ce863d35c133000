"""Aliases of a model registry: ``production`` names the champion; promotion moves it atomically.

An alias (``production``, ``staging``, any valid label) names one committed version of a model.
Layout under the registry root::

    _aliases/<name>/<alias>.json                 the alias: its latest promotion record
    _aliases/<name>/<alias>/history/<seq>.json   every promotion, numbered 1, 2, ... (create-only)

A promotion record (the alias object and its history copy hold the same bytes)::

    {"format": "tlt-model-registry-promotion", "format_version": 1, "name": "m",
     "alias": "production", "seq": 3, "from_version": "2", "to_version": "3",
     "who": "alice@host", "when": "<UTC ISO time>", "reason": "...", "metric": "mAP",
     "from_metric": 0.61, "to_metric": 0.65, "margin": 0.01,
     "from_metrics": {...}, "to_metrics": {...}, "decision": {PromotionDecision.to_dict()}}

Guarantees:
    - Atomic: the alias object is replaced by one put, so a reader sees the old champion or the
      new one, never neither; and only a committed version is ever named (`promote` checks it,
      versions are never deleted, and an aliased version cannot be overwritten).
    - Concurrent promoters: the swap is a compare-and-swap (`storage.write_if_unchanged`: S3
      ``If-Match``, GCS ``ifGenerationMatch``, local lock + rename) from the state the promoter
      read, so of two promoters that read the same alias exactly one moves it; the other gets
      a RegistryError and writes nothing.
    - History: the winner then creates ``history/<seq>.json``. A promoter killed between the
      swap and that write leaves the record in the alias object, from which the next
      `promote` restores it (and `history` shows it meanwhile).

This module reads aliases (`current`, `aliases`, `history`, `resolve`) and is the public door;
the stored record and its locations live in `tlt.io.registry_alias_records`, moving an alias in
`tlt.io.registry_promotion` (`promote`, re-exported here).
"""

from __future__ import annotations

from typing import Any

from tlt.errors import RegistryError
from tlt.io import storage
from tlt.io._storage_common import run_parallel
from tlt.io.registry_alias_records import (
    ALIASES_DIR, DEFAULT_ALIAS, PromotionRecord, RegistryLike, history_dir, history_uri,
    parse_record, read_alias,
)
from tlt.io.registry_index import check_name, is_name
from tlt.io.registry_promotion import UNCHECKED, promote

__all__ = ["ALIASES_DIR", "DEFAULT_ALIAS", "PromotionRecord", "promote", "current", "aliases",
           "history", "resolve", "UNCHECKED"]


def current(registry: RegistryLike, name: str,
            alias: str = DEFAULT_ALIAS) -> PromotionRecord | None:
    """The latest promotion of ``alias`` (what it names now), or None when it is unset.

    Raises:
        RegistryError: an invalid name, or a malformed alias object.
    """
    check_name("model name", name)
    check_name("alias", alias)
    return read_alias(registry.root, name, alias)[0]


def aliases(registry: RegistryLike, name: str) -> dict[str, str]:
    """Every alias of model ``name`` and the version it names, e.g. ``{"production": "3"}``.

    Raises:
        RegistryError: a malformed alias object.
    """
    check_name("model name", name)
    folder = storage.join(registry.root, ALIASES_DIR, name)
    found = {}
    for uri in storage.list_files(folder, recursive=False):
        base = uri.replace("\\", "/").rsplit("/", 1)[-1]
        if base.startswith(".") or not base.endswith(".json") or not is_name(base[:-5]):
            continue  # local lock files and temporaries
        record = read_alias(registry.root, name, base[:-5])[0]
        if record is not None:
            found[record.alias] = record.to_version
    return dict(sorted(found.items()))


def history(registry: RegistryLike, name: str, alias: str = DEFAULT_ALIAS) -> list[PromotionRecord]:
    """Every promotion of ``alias``, oldest first ([] when it was never set).

    Raises:
        RegistryError: a malformed record.
    """
    check_name("model name", name)
    check_name("alias", alias)
    # The alias first: a promoter writes its predecessor's record before it swaps, so once
    # the alias holds promotion k, the history holds 1 .. k-1.
    latest = read_alias(registry.root, name, alias)[0]
    folder = history_dir(registry.root, name, alias)
    uris = [u for u in storage.list_files(folder, recursive=True)
            if not u.replace("\\", "/").rsplit("/", 1)[-1].startswith(".")]
    blobs = run_parallel(storage.read_bytes, uris, desc="read promotion history")
    records = {}
    for uri, data in zip(uris, blobs):
        record = parse_record(uri, data, name, alias)
        if uri != history_uri(registry.root, name, alias, record.seq):
            raise RegistryError(f"{uri}: holds promotion {record.seq}, which belongs in "
                                f"{history_uri(registry.root, name, alias, record.seq)}")
        records[record.seq] = record
    if latest is not None:
        # A promoter killed after its swap, before its history write: the alias holds the record.
        records.setdefault(latest.seq, latest)
    return [records[seq] for seq in sorted(records)]


def resolve(registry: RegistryLike, name: str, alias_or_version: str | int) -> Any:
    """The version entry (a `tlt.io.registry.VersionInfo`, with metadata) a label names.

    ``alias_or_version`` is an alias (``production``) or a version label; an alias wins over
    a version of the same label.

    Raises:
        RegistryError: no such alias or version; for ``production``: "registry R has no
            production model 'm'; ..."; an alias naming a version the registry lacks.
    """
    label = str(alias_or_version)
    check_name("model name", name)
    check_name("alias or version", label)
    record = read_alias(registry.root, name, label)[0]
    if record is None:
        if label == DEFAULT_ALIAS:
            raise RegistryError(f"registry {registry.root} has no production model '{name}'; run "
                                f"the retraining pipeline once or promote a version with "
                                f"tlt-pull --promote")
        versions = [v.version for v in registry.list_versions(name)]
        if label not in versions:
            named = ", ".join(aliases(registry, name)) or "none"
            raise RegistryError(f"'{label}' is neither an alias nor a version of '{name}' in "
                                f"registry {registry.root}; aliases: {named}; versions: "
                                f"{', '.join(versions) or 'none'}")
        return registry.get_version(name, label)
    try:
        return registry.get_version(name, record.to_version)
    except RegistryError as err:
        raise RegistryError(f"{label} alias of '{name}' names version {record.to_version}, "
                            f"which registry {registry.root} does not hold ({err})") from None
