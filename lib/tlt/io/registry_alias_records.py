"""The stored form of a registry alias: where its objects live, the `PromotionRecord` they hold,
and reading one back, checked throughout (it decides what gets deployed).

Layout under the registry root (see `tlt.io.registry_aliases` for the guarantees)::

    _aliases/<name>/<alias>.json                 the alias: its latest promotion record
    _aliases/<name>/<alias>/history/<seq>.json   every promotion, numbered 1, 2, ... (create-only)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from tlt.errors import RegistryError
from tlt.io import storage
from tlt.io.registry_index import FORMAT_VERSION, is_name

__all__ = ["ALIASES_DIR", "DEFAULT_ALIAS", "RECORD_FORMAT", "RegistryLike", "PromotionRecord",
           "alias_uri", "history_dir", "history_uri", "parse_record", "read_alias"]

ALIASES_DIR = "_aliases"
DEFAULT_ALIAS = "production"
RECORD_FORMAT = "tlt-model-registry-promotion"


class RegistryLike(Protocol):
    """What the alias modules need of `tlt.io.registry.Registry` (kept import-free: no cycle)."""

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


def alias_uri(root: str, name: str, alias: str) -> str:
    """The alias object (its latest promotion record)."""
    return storage.join(root, ALIASES_DIR, name, alias + ".json")


def history_dir(root: str, name: str, alias: str) -> str:
    """The folder of the alias's numbered promotion records."""
    return storage.join(root, ALIASES_DIR, name, alias, "history")


def history_uri(root: str, name: str, alias: str, seq: int) -> str:
    """The history entry of promotion ``seq`` (zero-padded, so names sort in order)."""
    return storage.join(history_dir(root, name, alias), f"{seq:06d}.json")


def parse_record(uri: str, data: bytes, name: str, alias: str) -> PromotionRecord:
    """A stored record, checked throughout (it decides what gets deployed).

    Raises:
        RegistryError: not JSON, another format, a record of another model or alias, or a field
            of the wrong type (the message names ``uri`` and the field).
    """
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


def read_alias(root: str, name: str, alias: str) -> tuple[PromotionRecord | None, str | None]:
    """The alias's current record and the token of that state (None, None when unset)."""
    uri = alias_uri(root, name, alias)
    found = storage.read_with_token(uri)
    if found is None:
        return None, None
    return parse_record(uri, found[0], name, alias), found[1]
