"""Promotion: move a registry alias to a committed version with a compare-and-swap from the
state the promoter read, then record it in the alias's create-only history (the guarantees are
listed in `tlt.io.registry_aliases`)."""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import logging
import os
import socket
from typing import Any

from tlt.errors import RegistryError, StorageError
from tlt.io import storage
from tlt.io.registry_alias_records import (
    DEFAULT_ALIAS, PromotionRecord, RegistryLike, alias_uri, history_uri, parse_record, read_alias,
)
from tlt.io.registry_index import check_name

__all__ = ["promote", "UNCHECKED", "WHO_ENV"]

_LOG = logging.getLogger(__name__)

#: Environment variable naming who promotes (a pipeline sets it to its run); else user@host.
WHO_ENV = "TLT_PROMOTED_BY"
#: `promote(expected=...)` default: do not check which version the alias named before.
UNCHECKED = object()
_MANUAL_REASON = "promoted by hand (no champion/challenger decision recorded)"


def promote(registry: RegistryLike, name: str, version: str | int, *, alias: str = DEFAULT_ALIAS,
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
    old, token = read_alias(registry.root, name, alias)
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


def _new_record(registry: RegistryLike, name: str, alias: str, old: PromotionRecord | None,
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
    uri = alias_uri(root, record.name, record.alias)
    data = record.to_bytes()
    if storage.write_if_unchanged(uri, data, token):
        return
    now = storage.read_with_token(uri)
    if now is not None and now[0] == data:
        return  # a retried write whose first attempt landed (its answer was lost)
    holder = parse_record(uri, now[0], record.name, record.alias) if now else None
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
    uri = history_uri(root, record.name, record.alias, record.seq)
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
