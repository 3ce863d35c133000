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
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from tlt.errors import RegistryError, StorageError
from tlt.io import storage
from tlt.io._storage_common import run_parallel
from tlt.io.registry_index import FORMAT_VERSION, check_name, is_name

__all__ = ["ALIASES_DIR", "DEFAULT_ALIAS", "PromotionRecord", "promote", "current", "aliases",
           "history", "resolve", "UNCHECKED"]

_LOG = logging.getLogger(__name__)

ALIASES_DIR = "_aliases"
DEFAULT_ALIAS = "production"
RECORD_FORMAT = "tlt-model-registry-promotion"
#: Environment variable naming who promotes (a pipeline sets it to its run); else user@host.
WHO_ENV = "TLT_PROMOTED_BY"
#: `promote(expected=...)` default: do not check which version the alias named before.
UNCHECKED = object()
_MANUAL_REASON = "promoted by hand (no champion/challenger decision recorded)"


class _Registry(Protocol):
    """What this module needs of `tlt.io.registry.Registry` (kept import-free: no cycle)."""

    root: str

    def get_version(self, name: str, version: str | int) -> Any: ...

    def list_versions(self, name: str) -> list: ...


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion: the alias object's content and its history entry.

    Attributes:
        name: model name.
        alias: alias moved.
        seq: 1 for the alias's first promotion, then 2, 3 ...
        from_version: the version the alias named before (None on the first promotion).
        to_version: the version it names now.
        who: who promoted (``$TLT_PROMOTED_BY`` or user@host).
        when: UTC ISO time.
        reason: the decision's reason, or that it was promoted by hand.
        metric: the metric compared (None by hand).
        from_metric: the champion's value in the decision.
        to_metric: the challenger's value in the decision.
        margin: the margin the decision required.
        from_metrics: the ``metrics`` metadata of the old version's entry, if it has any.
        to_metrics: likewise for the new version.
        decision: `PromotionDecision.to_dict()`, or None for a promotion by hand.
    """

    name: str
    alias: str
    seq: int
    from_version: str | None
    to_version: str
    who: str
    when: str
    reason: str
    metric: str | None = None
    from_metric: float | None = None
    to_metric: float | None = None
    margin: float | None = None
    from_metrics: dict | None = None
    to_metrics: dict | None = None
    decision: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as stored (with its format fields)."""
        return {"format": RECORD_FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    def to_bytes(self) -> bytes:
        """The stored JSON: identical bytes in the alias object and in its history entry."""
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8")


# --------------------------------------------------------------------------------- locations

def _alias_uri(root: str, name: str, alias: str) -> str:
    return storage.join(root, ALIASES_DIR, name, alias + ".json")


def _history_dir(root: str, name: str, alias: str) -> str:
    return storage.join(root, ALIASES_DIR, name, alias, "history")


def _history_uri(root: str, name: str, alias: str, seq: int) -> str:
    return storage.join(_history_dir(root, name, alias), f"{seq:06d}.json")


# --------------------------------------------------------------------------------- reading

def _parse_record(uri: str, data: bytes, name: str, alias: str) -> PromotionRecord:
    """A stored record, checked throughout (it decides what gets deployed)."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise RegistryError(f"{uri} is not valid JSON: {err}") from None
    if not isinstance(obj, dict) or obj.get("format") != RECORD_FORMAT:
        raise RegistryError(f"{uri} is malformed: expected a '{RECORD_FORMAT}' object")
    if obj.get("name") != name or obj.get("alias") != alias:
        raise RegistryError(f"{uri}: names {obj.get('name')!r} alias {obj.get('alias')!r}, "
                            f"but its key says {name!r} {alias!r}")
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise RegistryError(f"{uri}: seq must be a whole number >= 1, got {seq!r}")
    if not is_name(obj.get("to_version")) or not (obj.get("from_version") is None
                                                  or is_name(obj["from_version"])):
        raise RegistryError(f"{uri}: invalid version in to_version {obj.get('to_version')!r} / "
                            f"from_version {obj.get('from_version')!r}")
    fields = {k: obj.get(k) for k in PromotionRecord.__dataclass_fields__}
    for key in ("who", "when", "reason"):
        if not isinstance(fields[key], str):
            raise RegistryError(f"{uri}: {key} must be a string, got {fields[key]!r}")
    for key in ("from_metrics", "to_metrics", "decision"):
        if fields[key] is not None and not isinstance(fields[key], dict):
            raise RegistryError(f"{uri}: {key} must be an object or null")
    for key in ("from_metric", "to_metric", "margin"):
        if fields[key] is not None and (isinstance(fields[key], bool)
                                        or not isinstance(fields[key], (int, float))):
            raise RegistryError(f"{uri}: {key} must be a number or null, got {fields[key]!r}")
    if fields["metric"] is not None and not isinstance(fields["metric"], str):
        raise RegistryError(f"{uri}: metric must be a string or null, got {fields['metric']!r}")
    return PromotionRecord(**fields)


def _read_alias(root: str, name: str, alias: str) -> tuple[PromotionRecord | None, str | None]:
    """The alias's current record and the token of that state (None, None when unset)."""
    uri = _alias_uri(root, name, alias)
    found = storage.read_with_token(uri)
    if found is None:
        return None, None
    return _parse_record(uri, found[0], name, alias), found[1]


def current(registry: _Registry, name: str, alias: str = DEFAULT_ALIAS) -> PromotionRecord | None:
    """The latest promotion of ``alias`` (what it names now), or None when it is unset.

    Raises:
        RegistryError: an invalid name, or a malformed alias object.
    """
    check_name("model name", name)
    check_name("alias", alias)
    return _read_alias(registry.root, name, alias)[0]


def aliases(registry: _Registry, name: str) -> dict[str, str]:
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
        record = _read_alias(registry.root, name, base[:-5])[0]
        if record is not None:
            found[record.alias] = record.to_version
    return dict(sorted(found.items()))


def history(registry: _Registry, name: str, alias: str = DEFAULT_ALIAS) -> list[PromotionRecord]:
    """Every promotion of ``alias``, oldest first ([] when it was never set).

    Raises:
        RegistryError: a malformed record.
    """
    check_name("model name", name)
    check_name("alias", alias)
    # The alias first: a promoter writes its predecessor's record before it swaps, so once
    # the alias holds promotion k, the history holds 1 .. k-1.
    latest = _read_alias(registry.root, name, alias)[0]
    folder = _history_dir(registry.root, name, alias)
    uris = [u for u in storage.list_files(folder, recursive=True)
            if not u.replace("\\", "/").rsplit("/", 1)[-1].startswith(".")]
    blobs = run_parallel(storage.read_bytes, uris, desc="read promotion history")
    records = {}
    for uri, data in zip(uris, blobs):
        record = _parse_record(uri, data, name, alias)
        if uri != _history_uri(registry.root, name, alias, record.seq):
            raise RegistryError(f"{uri}: holds promotion {record.seq}, which belongs in "
                                f"{_history_uri(registry.root, name, alias, record.seq)}")
        records[record.seq] = record
    if latest is not None:
        # A promoter killed after its swap, before its history write: the alias holds the record.
        records.setdefault(latest.seq, latest)
    return [records[seq] for seq in sorted(records)]


def resolve(registry: _Registry, name: str, alias_or_version: str | int) -> Any:
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
    record = _read_alias(registry.root, name, label)[0]
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


# --------------------------------------------------------------------------------- promoting

def promote(registry: _Registry, name: str, version: str | int, *, alias: str = DEFAULT_ALIAS,
            decision: dict | None = None, who: str | None = None,
            expected: Any = UNCHECKED) -> PromotionRecord:
    """Move ``alias`` of model ``name`` to ``version`` atomically, and record it in the history.

    Args:
        registry: the registry (`tlt.io.registry.Registry`).
        name: model name.
        version: a committed version of it.
        alias: the alias to move (created by the first promotion).
        decision: `PromotionDecision.to_dict()` of the champion/challenger comparison (its
            metric values, margin and reason go into the record); None for a promotion by hand.
        who: who promotes; default ``$TLT_PROMOTED_BY`` or user@host.
        expected: the version the decision was made against (None: "no champion yet"); when
            given and the alias names another one, nothing is moved.

    Returns:
        The new record; the current one unchanged when ``alias`` already names ``version``.

    Raises:
        RegistryError: bad names, an unknown version, a decision to keep the champion, or a
            lost race ("production alias of 'm' was moved by someone else meanwhile (now v3);
            decide again").
    """
    version = str(version)
    check_name("model name", name)
    check_name("alias", alias)
    check_name("version", version)
    decision = _check_decision(decision)
    if expected is not UNCHECKED and expected is not None:
        expected = str(expected)
    target = registry.get_version(name, version)  # only a committed version may be named
    old, token = _read_alias(registry.root, name, alias)
    if old is not None:
        _write_history(registry.root, old)  # restore one a killed promoter did not write
    if old is not None and old.to_version == version:  # e.g. a retried pipeline step
        _LOG.info("%s alias of %s already names version %s", alias, name, version)
        return old
    if expected is not UNCHECKED and (old.to_version if old else None) != expected:
        raise _moved_error(name, alias, old, expected)
    record = _new_record(registry, name, alias, old, target, decision, who)
    _swap(registry.root, record, token)
    _write_history(registry.root, record)
    _LOG.info("%s:%s is now %s (was %s)", name, version, alias,
              old.to_version if old else "unset")
    return record


def _check_decision(decision: Any) -> dict | None:
    if decision is None:
        return None
    if hasattr(decision, "to_dict"):
        decision = decision.to_dict()
    if not isinstance(decision, dict):
        raise RegistryError(f"decision must be PromotionDecision.to_dict(), got "
                            f"{type(decision).__name__}")
    if decision.get("promote") is False:
        raise RegistryError(f"the decision was to keep the champion ({decision.get('reason')}); "
                            f"nothing to promote")
    try:
        json.dumps(decision)
    except (TypeError, ValueError) as err:
        raise RegistryError(f"decision cannot be stored as JSON: {err}") from None
    return dict(decision)


def _new_record(registry: _Registry, name: str, alias: str, old: PromotionRecord | None,
                target: Any, decision: dict | None, who: str | None) -> PromotionRecord:
    from_metrics = None
    if old is not None:
        try:
            from_metrics = _metrics(registry.get_version(name, old.to_version))
        except RegistryError:  # the old champion's entry is unreadable: still promote
            from_metrics = None
    d = decision or {}
    return PromotionRecord(
        name=name, alias=alias, seq=(old.seq + 1) if old else 1,
        from_version=old.to_version if old else None, to_version=target.version,
        who=who or _default_who(), when=_now(), reason=d.get("reason") or _MANUAL_REASON,
        metric=d.get("metric"), from_metric=d.get("champion"), to_metric=d.get("challenger"),
        margin=d.get("margin"), from_metrics=from_metrics, to_metrics=_metrics(target),
        decision=decision)


def _swap(root: str, record: PromotionRecord, token: str | None) -> None:
    """Compare-and-swap the alias object from the state read (``token``) to ``record``."""
    uri = _alias_uri(root, record.name, record.alias)
    data = record.to_bytes()
    if storage.write_if_unchanged(uri, data, token):
        return
    now = storage.read_with_token(uri)
    if now is not None and now[0] == data:
        return  # a retried write whose first attempt landed (its answer was lost)
    holder = _parse_record(uri, now[0], record.name, record.alias) if now else None
    raise _moved_error(record.name, record.alias, holder)


def _moved_error(name: str, alias: str, now: PromotionRecord | None,
                 expected: Any = UNCHECKED) -> RegistryError:
    where = f"v{now.to_version}" if now else "unset"
    if expected is not UNCHECKED:
        where += f"; the decision was made against {f'v{expected}' if expected else 'no champion'}"
    return RegistryError(f"{alias} alias of '{name}' was moved by someone else meanwhile "
                         f"(now {where}); decide again")


def _write_history(root: str, record: PromotionRecord) -> None:
    """Create the record's history entry unless it exists (it is immutable once written)."""
    uri = _history_uri(root, record.name, record.alias, record.seq)
    if storage.write_new(uri, record.to_bytes()):
        return
    try:
        held = storage.read_bytes(uri)
    except StorageError:
        return
    if held != record.to_bytes():
        _LOG.warning("%s already holds another promotion record than the alias's; kept", uri)


def _metrics(info: Any) -> dict | None:
    metrics = (getattr(info, "metadata", None) or {}).get("metrics")
    return dict(metrics) if isinstance(metrics, dict) else None


def _default_who() -> str:
    if os.environ.get(WHO_ENV):
        return os.environ[WHO_ENV]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
