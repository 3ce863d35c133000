"""The registry's champion for scheduled retraining: fetch it, publish a challenger beside it.

A retraining run reads the version the ``production`` alias names (the champion), fine-tunes a
challenger from it and publishes the challenger as the next version, whether or not it is then
promoted: every version stays in the registry with its metrics and lineage, and only the alias
moves (`tlt.io.registry_aliases.promote`, a compare-and-swap from the champion the run read).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlt.errors import RegistryError
from tlt.io.registry import Registry, VersionInfo
from tlt.io.registry_aliases import DEFAULT_ALIAS, current, resolve
from tlt.io.registry_files import collect_files, sha256_file

__all__ = ["Champion", "fetch_champion", "next_version", "publish_challenger"]

_LOG = logging.getLogger(__name__)

# Tries of `publish_challenger` when another run publishes the same version number first.
_PUBLISH_TRIES = 5


@dataclass(frozen=True)
class Champion:
    """The production model a retraining run starts from.

    Attributes:
        name: model name in the registry.
        version: the version the alias names.
        files: the local paths of its files (pulled and checksum-verified).
        metadata: the version's registry metadata (metrics, class counts, lineage).
    """

    name: str
    version: str
    files: tuple[Path, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


def _has_models(registry: Registry) -> bool:
    """Whether the registry root holds a catalogue at all (a first run starts from nothing)."""
    from tlt.io.registry_catalogue import load_catalogue

    return bool(load_catalogue(registry.root, required=False)["models"])


def fetch_champion(registry_uri: str | os.PathLike, name: str, dest_dir: str | os.PathLike, *,
                   alias: str = DEFAULT_ALIAS, required: bool = False) -> Champion | None:
    """Pull the version ``alias`` names into ``dest_dir``.

    Args:
        registry_uri: registry root (local folder, gs:// or s3://).
        name: model name.
        dest_dir: local folder receiving the champion's files.
        alias: the alias naming the champion.
        required: raise when there is none (instead of returning None for a first run).

    Returns:
        The `Champion`, or None when the alias is unset (or the registry empty) and not required.

    Raises:
        RegistryError: ``required`` and no champion ("registry R has no production model 'm';
            ..."), or an alias naming a version the registry lacks.
    """
    registry = Registry(registry_uri)
    if not required and (not _has_models(registry) or current(registry, name, alias) is None):
        return None
    if required and not _has_models(registry):
        raise RegistryError(f"registry {registry.root} has no {alias} model '{name}' (the registry "
                            f"is empty); run the retraining pipeline once without "
                            f"require_champion, or publish and promote a version with tlt-pull")
    info = resolve(registry, name, alias)
    files = registry.pull(name, info.version, dest_dir)
    _LOG.info("champion %s:%s (%s) pulled into %s", name, info.version, alias, dest_dir)
    return Champion(name=name, version=info.version, files=tuple(files),
                    metadata=dict(info.metadata))


def next_version(registry: Registry, name: str) -> str:
    """One more than the highest whole-number version of ``name`` ("1" for a new model)."""
    try:
        versions = [v.version for v in registry.list_versions(name)]
    except RegistryError:  # no registry or no such model yet
        return "1"
    numbers = [int(v) for v in versions if re.fullmatch(r"\d+", v)]
    return str(max(numbers, default=0) + 1)


def _published_already(registry: Registry, name: str, files) -> VersionInfo | None:
    """The version of ``name`` whose files have exactly these names and SHA-256 sums, if any."""
    try:
        versions = registry.list_versions(name)
    except RegistryError:
        return None
    wanted = {(rel, sha256_file(path)) for path, rel in collect_files(files)}
    return next((v for v in versions if {(f.path, f.sha256) for f in v.files} == wanted), None)


def publish_challenger(registry_uri: str | os.PathLike, name: str,
                       files: str | os.PathLike | list, *, metadata: dict[str, Any],
                       task: str | None = None) -> VersionInfo:
    """Publish a challenger as the next whole-number version of ``name``.

    A concurrent run that takes the same number first makes this one take the next (versions
    are create-only, so neither publish is lost). Files already published as a version (a
    retried pipeline step) are not published again: that version is returned.

    Raises:
        RegistryError: publishing failed, or lost the race ``_PUBLISH_TRIES`` times.
    """
    registry = Registry(registry_uri)
    same = _published_already(registry, name, files)
    if same is not None:  # a retried step whose first attempt published: never twice
        _LOG.info("%s:%s already holds these files; not publishing again", name, same.version)
        return same
    for _ in range(_PUBLISH_TRIES):
        version = next_version(registry, name)
        try:
            return registry.publish(name, version, files, metadata=metadata, task=task,
                                    description="champion/challenger retraining")
        except RegistryError as err:
            if "already exists" not in str(err) and "meanwhile" not in str(err):
                raise
            _LOG.info("version %s of %s was taken meanwhile; trying the next", version, name)
    raise RegistryError(f"could not publish a new version of '{name}' in registry "
                        f"{registry.root}: {_PUBLISH_TRIES} concurrent publishes took each number")
