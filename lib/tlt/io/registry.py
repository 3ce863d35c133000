"""A model registry on local disk, gs:// or s3://: what ``tlt-pull`` lists, pulls and publishes.

This replaces NGC for ``tlt-pull``. Layout::

    <root>/<name>/<version>-<token>/<files>   the files of one published version
    <root>/_versions/<name>/<version>.json    the version's entry: its commit record
    <root>/_pending/<name>/<label>.json       lease of a publish still uploading
    <root>/_aliases/<name>/<alias>.json       an alias (``production``) naming one version,
                                              moved by `promote` (`tlt.io.registry_aliases`)
    <root>/index.json                         the whole catalogue, for older releases

A version entry::

    {"location": "<name>/<version>-<token>", "created": "<UTC ISO time>", "size": <bytes>,
     "files": [{"path", "size", "sha256"}], "metadata": {...}}

and the catalogue (``index.json``, and what `tlt.io.registry_catalogue.load_catalogue`
returns)::

    {"format": "tlt-model-registry", "format_version": 1,
     "models": {"<name>": {"application": "Classification", "framework": "TLT",
                           "precision": "FP32", "description": "...",
                           "versions": {"<version>": <version entry>}}}}

Concurrency: a publish uploads into a folder of its own, then commits by *creating* its entry
object with a create-only write the store arbitrates (local hard link, S3 ``If-None-Match``,
GCS ``ifGenerationMatch=0``). No shared object is read, modified and written back, so
concurrent publishes never lose a version on any backend, and of two publishes of the same
version exactly one succeeds (versions are immutable unless ``overwrite`` is asked for). A
reader never sees a version whose files are not all there. Everything read back is validated
(`tlt.io.registry_index`), and ``pull`` writes only inside its destination folder. Uploads left
by a killed publish are removed by the next publish of the model
(`tlt.io.registry_orphans`).

This module is the `Registry` facade; the work is done by one module per job:
`tlt.io.registry_types` (what is handed out), `tlt.io.registry_files` (local files: hashing,
collecting, safe targets), `tlt.io.registry_pull`, `tlt.io.registry_publish`,
`tlt.io.registry_catalogue` (reading and committing entries), `tlt.io.registry_index`
(validation), `tlt.io.registry_orphans` and `tlt.io.registry_aliases`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from tlt.errors import RegistryError
from tlt.io import storage
from tlt.io.registry_aliases import (
    DEFAULT_ALIAS, PromotionRecord, aliases, current, history, promote, resolve,
)
from tlt.io.registry_catalogue import INDEX_NAME, load_catalogue
from tlt.io.registry_index import check_name
from tlt.io.registry_orphans import DEFAULT_GRACE
from tlt.io.registry_publish import PublishRequest, publish_version, sweep_orphans
from tlt.io.registry_pull import pull_version
from tlt.io.registry_types import (
    APPLICATIONS, FileInfo, ModelInfo, VersionInfo, model_info, version_info, version_key,
)

__all__ = ["Registry", "ModelInfo", "VersionInfo", "FileInfo", "INDEX_NAME", "APPLICATIONS",
           "DEFAULT_ALIAS", "PromotionRecord", "promote", "current", "aliases", "history",
           "resolve"]


class Registry:
    """A model registry rooted at a local folder, ``gs://bucket/prefix`` or ``s3://bucket/prefix``.

    Args:
        root_uri: the registry root.
        orphan_grace: seconds an uncommitted upload whose publisher cannot be checked (another
            machine, no lease) is left alone before a publish deletes it as an orphan.
    """

    def __init__(self, root_uri: str | os.PathLike, *, orphan_grace: float = DEFAULT_GRACE):
        root = os.fspath(root_uri)
        if root.startswith("file://"):
            root = root[len("file://"):]
        self.root = root.rstrip("/") or "/"
        self.index_uri = storage.join(self.root, INDEX_NAME)
        self.orphan_grace = float(orphan_grace)

    def __repr__(self) -> str:
        return f"Registry({self.root!r})"

    # ---------------------------------------------------------------------------- reading

    def list_models(self) -> list[ModelInfo]:
        """All models, sorted by name.

        Raises:
            RegistryError: no registry, or a malformed index.json or entry.
        """
        models = load_catalogue(self.root, required=True)["models"]
        return [model_info(name, models[name]) for name in sorted(models)]

    def list_versions(self, name: str) -> list[VersionInfo]:
        """The versions of model ``name``, oldest (lowest) first.

        Raises:
            RegistryError: no registry, malformed catalogue, or no such model.
        """
        model = self._model(name)
        return [version_info(name, v, model["versions"][v])
                for v in sorted(model["versions"], key=version_key)]

    def latest_version(self, name: str) -> str:
        """The highest version of model ``name`` (natural order: "10" after "9").

        Raises:
            RegistryError: no registry, malformed catalogue, or no such model.
        """
        return model_info(name, self._model(name)).latest_version

    def get_version(self, name: str, version: str | int) -> VersionInfo:
        """The catalogue entry of one version.

        Raises:
            RegistryError: no registry, malformed catalogue, no such model or version.
        """
        version = str(version)
        versions = self._model(name)["versions"]
        if version not in versions:
            available = ", ".join(sorted(versions, key=version_key)) or "none"
            raise RegistryError(f"version {version} of '{name}' not found; available: {available}")
        return version_info(name, version, versions[version])

    # ---------------------------------------------------------------------------- writing

    def pull(self, name: str, version: str | int, dest_dir: str | os.PathLike, *,
             progress: bool = False) -> list[Path]:
        """Download one version's files into ``dest_dir`` and verify their SHA-256
        (`tlt.io.registry_pull.pull_version`: nothing is written outside ``dest_dir``, and no
        file lands there before its checksum matches).

        Args:
            name: model name.
            version: version to download.
            dest_dir: local folder; created if needed. Files keep their relative paths.
            progress: show a tqdm byte counter on stderr.

        Returns:
            The local paths written, in catalogue order.

        Raises:
            RegistryError: unknown model/version, ``dest_dir`` is (under) a file, a target would
                leave ``dest_dir``, a listed file is missing, or a checksum differs.
            StorageError: a download failed.
        """
        return pull_version(self.root, self.get_version(name, version), dest_dir,
                            progress=progress)

    def publish(self, name: str, version: str | int,
                files: str | os.PathLike | Sequence[str | os.PathLike], *,
                metadata: dict | None = None, task: str | None = None,
                framework: str | None = None, precision: str | None = None,
                description: str | None = None, overwrite: bool = False,
                progress: bool = False) -> VersionInfo:
        """Publish local files as ``name`` version ``version``; creates the registry if needed.

        The files go to a fresh folder and the version becomes visible only when its entry is
        committed (see the module docstring). Concurrent publishes of other versions are never
        lost; of concurrent publishes of this version, one succeeds and the others raise.
        Afterwards, uploads left by killed publishes of this model are removed.

        Args:
            name: model name (letters, digits, ``. _ -``).
            version: version label (same characters), e.g. ``1`` or ``2024.06``.
            files: a local folder (its whole tree is published), one file, or a list of files
                and folders (each kept under its base name).
            metadata: any JSON object (metrics, lineage such as the training data's class
                counts ...), stored with the version and returned by `resolve` /
                `get_version`. Missing keys are filled from the metadata of a plain .tlt/.etlt
                file among ``files``.
            task: ``classification`` or ``detection`` (shown as the Application column); when
                None, kept from an earlier version or taken from the metadata's ``task``.
            framework: catalogue column, default ``TLT`` (or the earlier value).
            precision: catalogue column, default ``FP32`` (or the earlier value).
            description: free text for the catalogue.
            overwrite: replace an existing version instead of failing (not one an alias
                names: a deployed version stays as it was promoted).
            progress: show a tqdm byte counter on stderr.

        Returns:
            The new version's catalogue entry.

        Raises:
            RegistryError: bad name/version, metadata that is not JSON, no files, the version
                exists (also when another publisher committed it first) or an alias names it,
                malformed catalogue.
            StorageError: an upload failed (nothing is committed; the upload is removed).
        """
        request = PublishRequest(metadata=metadata, task=task, framework=framework,
                                 precision=precision, description=description,
                                 overwrite=overwrite, progress=progress)
        return publish_version(self, name, str(version), files, request)

    def remove_orphans(self, name: str) -> list[str]:
        """Delete the uploads of model ``name`` that no committed version points at.

        Only uploads whose publisher is gone are removed: its lease names this host and a dead
        process, or the lease (or, without one, the newest file) is older than
        ``orphan_grace``.

        Returns:
            The deleted locations (``<name>/<label>``).
        """
        check_name("model name", name)
        return sweep_orphans(self.root, name, load_catalogue(self.root, required=False),
                             self.orphan_grace)

    def _model(self, name: str) -> dict:
        """The catalogue entry of model ``name`` (the registry must exist)."""
        models = load_catalogue(self.root, required=True)["models"]
        if name not in models:
            available = ", ".join(sorted(models)) or "none"
            raise RegistryError(f"model '{name}' not found in registry {self.root}; "
                                f"available: {available}")
        return models[name]
