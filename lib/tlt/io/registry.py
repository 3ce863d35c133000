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
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from tqdm import tqdm

from tlt.errors import ModelFileError, RegistryError, StorageError
from tlt.io import storage
from tlt.io.atomic import atomic_path
from tlt.io.registry_catalogue import (
    INDEX_NAME, commit_entry, load_catalogue, write_index_cache,
)
from tlt.io.registry_index import check_name
from tlt.io.registry_aliases import (
    DEFAULT_ALIAS, PromotionRecord, aliases, current, history, promote, resolve,
)
from tlt.io.registry_orphans import DEFAULT_GRACE, lease, remove_orphans

__all__ = ["Registry", "ModelInfo", "VersionInfo", "FileInfo", "INDEX_NAME", "APPLICATIONS",
           "DEFAULT_ALIAS", "PromotionRecord", "promote", "current", "aliases", "history",
           "resolve"]

_LOG = logging.getLogger(__name__)

_CHUNK = 1 << 20
#: Display names of the ``--task`` values, as NGC's "Application" column shows them.
APPLICATIONS = {"classification": "Classification", "detection": "Detection"}
_MODEL_SUFFIXES = (".tlt", ".etlt")


@dataclass(frozen=True)
class FileInfo:
    """One file of a published version: path relative to the version folder, size, SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class VersionInfo:
    """One published version of a model."""

    name: str
    version: str
    created: str
    size: int
    files: tuple[FileInfo, ...]
    metadata: dict = field(default_factory=dict)
    location: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """A model in the registry with its catalogue fields and versions (oldest first)."""

    name: str
    application: str
    framework: str
    precision: str
    description: str
    versions: tuple[str, ...]
    latest_version: str
    last_modified: str


def _version_key(version: str) -> tuple:
    """Natural order: "2" < "10", "1.9" < "1.10"; digit runs compare as numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                 for p in re.split(r"(\d+)", version) if p)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        return [_model_info(name, models[name]) for name in sorted(models)]

    def list_versions(self, name: str) -> list[VersionInfo]:
        """The versions of model ``name``, oldest (lowest) first.

        Raises:
            RegistryError: no registry, malformed catalogue, or no such model.
        """
        model = self._model(load_catalogue(self.root, required=True), name)
        return [_version_info(name, v, model["versions"][v])
                for v in sorted(model["versions"], key=_version_key)]

    def latest_version(self, name: str) -> str:
        """The highest version of model ``name`` (natural order: "10" after "9").

        Raises:
            RegistryError: no registry, malformed catalogue, or no such model.
        """
        model = self._model(load_catalogue(self.root, required=True), name)
        return _model_info(name, model).latest_version

    def get_version(self, name: str, version: str | int) -> VersionInfo:
        """The catalogue entry of one version.

        Raises:
            RegistryError: no registry, malformed catalogue, no such model or version.
        """
        version = str(version)
        model = self._model(load_catalogue(self.root, required=True), name)
        versions = model["versions"]
        if version not in versions:
            available = ", ".join(sorted(versions, key=_version_key)) or "none"
            raise RegistryError(f"version {version} of '{name}' not found; available: {available}")
        return _version_info(name, version, versions[version])

    # ---------------------------------------------------------------------------- pull

    def pull(self, name: str, version: str | int, dest_dir: str | os.PathLike, *,
             progress: bool = False) -> list[Path]:
        """Download one version's files into ``dest_dir`` and verify their SHA-256.

        Every target path is checked to resolve inside ``dest_dir`` (symbolic links included)
        before anything is written. Each file is downloaded to a temporary sibling and renamed
        into place only once its checksum matches, so ``dest_dir`` never holds a corrupt file.

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
        info = self.get_version(name, version)
        targets = _targets(Path(dest_dir), info)
        with tqdm(total=info.size, unit="B", unit_scale=True, disable=not progress,
                  desc=f"{name}:{info.version}") as bar:
            for f, target in zip(info.files, targets):
                self._download(storage.join(self.root, info.location, f.path), target, f)
                bar.update(f.size)
        return targets

    def _download(self, uri: str, target: Path, f: FileInfo) -> None:
        if not storage.exists(uri):
            raise RegistryError(f"registry {self.root}: {uri} is listed in the catalogue but "
                                f"missing")
        with atomic_path(target) as tmp:
            storage.download_file(uri, tmp)
            got = _sha256_file(tmp)
            if got != f.sha256:
                raise RegistryError(f"{uri}: sha256 mismatch after download (the catalogue says "
                                    f"{f.sha256}, got {got}); the registry copy is corrupt")

    # ---------------------------------------------------------------------------- publish

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
        version = str(version)
        check_name("model name", name)
        check_name("version", version)
        local = _collect(files)
        model = load_catalogue(self.root, required=False)["models"].get(name, {"versions": {}})
        replaced = model["versions"].get(version)
        if replaced is not None and not overwrite:
            raise self._exists_error(name, version)
        if replaced is not None:
            self._check_not_aliased(name, version)
        meta = _check_metadata(metadata)
        for key, value in _model_file_metadata(local).items():
            meta.setdefault(key, value)
        fields = _model_fields(model, meta, task, framework, precision, description)
        location = f"{name}/{version}-{secrets.token_hex(4)}"
        with lease(self.root, location, self.orphan_grace):
            entry = self._upload(local, location, meta, progress, f"publish {name}:{version}")
            if not commit_entry(self.root, name, version, fields, entry, replace=overwrite):
                raise self._exists_error(name, version, raced=True)  # the lease drops the upload
        self._after_commit(name, version, replaced, location)
        _LOG.info("published %s:%s (%d files) to %s", name, version, len(local), self.root)
        return _version_info(name, version, entry)

    def remove_orphans(self, name: str) -> list[str]:
        """Delete the uploads of model ``name`` that no committed version points at.

        Only uploads whose publisher is gone are removed: its lease names this host and a dead
        process, or the lease (or, without one, the newest file) is older than
        ``orphan_grace``.

        Returns:
            The deleted locations (``<name>/<label>``).
        """
        check_name("model name", name)
        return self._sweep(name, load_catalogue(self.root, required=False))

    # ---------------------------------------------------------------------------- internals

    def _upload(self, local: list[tuple[Path, str]], location: str, meta: dict,
                progress: bool, desc: str) -> dict:
        """Upload the files into ``location``; return the version entry describing them."""
        files = []
        with tqdm(total=sum(p.stat().st_size for p, _ in local), unit="B", unit_scale=True,
                  disable=not progress, desc=desc) as bar:
            for path, rel in local:
                files.append({"path": rel, "size": path.stat().st_size,
                              "sha256": _sha256_file(path)})
                storage.upload_file(path, storage.join(self.root, location, rel))
                bar.update(path.stat().st_size)
        return {"location": location, "created": _now(), "files": files, "metadata": meta,
                "size": sum(f["size"] for f in files)}

    def _after_commit(self, name: str, version: str, replaced: dict | None,
                      location: str) -> None:
        """Best-effort housekeeping once a version is committed: none of it can undo that."""
        try:
            if replaced is not None and replaced.get("location") not in (None, location):
                storage.delete_tree(storage.join(self.root, replaced["location"]))
            catalogue = load_catalogue(self.root, required=False)
            write_index_cache(self.root, catalogue)
            self._sweep(name, catalogue)
        except (StorageError, RegistryError) as err:
            _LOG.warning("published %s:%s, but tidying registry %s failed: %s", name, version,
                         self.root, err)

    def _sweep(self, name: str, catalogue: dict) -> list[str]:
        model = catalogue["models"].get(name, {"versions": {}})
        referenced = {e.get("location", f"{name}/{v}") for v, e in model["versions"].items()}
        return remove_orphans(self.root, name, referenced, self.orphan_grace)

    def _check_not_aliased(self, name: str, version: str) -> None:
        named = sorted(a for a, v in aliases(self, name).items() if v == version)
        if named:
            raise RegistryError(f"version {version} of '{name}' is its {', '.join(named)} "
                                f"version in registry {self.root} and cannot be overwritten; "
                                f"publish a new version and promote it")

    def _exists_error(self, name: str, version: str, raced: bool = False) -> RegistryError:
        how = "was published by someone else meanwhile" if raced else "already exists"
        return RegistryError(f"version {version} of '{name}' {how} in registry {self.root}; "
                             f"versions are immutable: publish a new version, or pass "
                             f"overwrite=True (tlt-pull --overwrite) to replace it")

    def _model(self, catalogue: dict, name: str) -> dict:
        models = catalogue["models"]
        if name not in models:
            available = ", ".join(sorted(models)) or "none"
            raise RegistryError(f"model '{name}' not found in registry {self.root}; "
                                f"available: {available}")
        return models[name]


def _check_metadata(metadata: dict | None) -> dict:
    """A copy of ``metadata``, proven storable as JSON before anything is uploaded."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise RegistryError(f"metadata must be a JSON object (dict), got "
                            f"{type(metadata).__name__}")
    try:
        return json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as err:
        raise RegistryError(f"metadata cannot be stored as JSON: {err}") from None


def _model_fields(model: dict, meta: dict, task: str | None, framework: str | None,
                  precision: str | None, description: str | None) -> dict:
    """The model's catalogue columns after this publish: given values, else earlier ones."""
    application = APPLICATIONS.get(task, task.title()) if task else None
    if application is None and not model.get("application") and meta.get("task"):
        application = APPLICATIONS.get(meta["task"], str(meta["task"]).title())
    return {"application": application or model.get("application", ""),
            "framework": framework or model.get("framework", "TLT"),
            "precision": precision or model.get("precision", "FP32"),
            "description": description if description is not None
            else model.get("description", "")}


def _model_info(name: str, model: dict) -> ModelInfo:
    versions = tuple(sorted(model["versions"], key=_version_key))
    latest = versions[-1] if versions else ""
    return ModelInfo(name=name, application=model.get("application", ""),
                     framework=model.get("framework", ""),
                     precision=model.get("precision", ""),
                     description=model.get("description", ""), versions=versions,
                     latest_version=latest,
                     last_modified=model["versions"][latest].get("created", "") if latest else "")


def _version_info(name: str, version: str, entry: dict) -> VersionInfo:
    """A validated entry (see `tlt.io.registry_index.validate_version`) as a VersionInfo."""
    files = tuple(FileInfo(f["path"], f["size"], f["sha256"]) for f in entry["files"])
    return VersionInfo(name=name, version=version, created=entry.get("created", ""),
                       size=entry.get("size", sum(f.size for f in files)), files=files,
                       metadata=dict(entry.get("metadata") or {}),
                       location=entry.get("location", f"{name}/{version}"))


def _targets(dest: Path, info: VersionInfo) -> list[Path]:
    """The local path of every file of ``info`` under ``dest``, each proven to stay inside it."""
    for folder in (dest, *dest.parents):
        if folder.exists():
            if not folder.is_dir():
                raise RegistryError(f"cannot download into {dest}: {folder} is a file, not a "
                                    f"folder")
            break
    root = dest.resolve()
    targets = []
    for f in info.files:
        target = dest.joinpath(*PurePosixPath(f.path).parts)
        resolved = target.resolve()
        if resolved == root or root not in resolved.parents:
            raise RegistryError(f"{info.name}:{info.version}: file {f.path!r} would be written "
                                f"to {resolved}, outside the destination {root}")
        targets.append(target)
    return targets


def _collect(files) -> list[tuple[Path, str]]:
    """Expand ``files`` into (local path, relative posix path) pairs."""
    items = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    single_dir = len(items) == 1 and Path(items[0]).is_dir()
    out: dict[str, Path] = {}
    for item in items:
        path = Path(item)
        if not path.exists():
            raise RegistryError(f"cannot publish {path}: no such file or folder")
        if path.is_dir():
            # A lone folder is published as its contents; folders in a list keep their name.
            base = path if single_dir else path.parent
            found = sorted(p for p in path.rglob("*") if p.is_file())
            pairs = [(p, p.relative_to(base).as_posix()) for p in found]
        else:
            pairs = [(path, path.name)]
        for p, rel in pairs:
            if rel in out:
                raise RegistryError(f"cannot publish: two files would both be stored as "
                                    f"{rel!r} ({out[rel]} and {p})")
            out[rel] = p
    if not out:
        raise RegistryError(f"cannot publish {files}: no files found")
    return [(p, rel) for rel, p in out.items()]


def _model_file_metadata(local: list[tuple[Path, str]]) -> dict:
    """Metadata of the first plain model file among ``local`` (encrypted ones need a key)."""
    from tlt.io import modelfile

    for path, _ in local:
        if path.suffix not in _MODEL_SUFFIXES:
            continue
        try:
            meta = modelfile.read_model_metadata(path)
        except ModelFileError:
            # Encrypted (ModelKeyError: no key here) or not a model file: publishing any bytes
            # is allowed, only the catalogue misses the facts.
            continue
        meta.pop("spec", None)  # spec text can be long; it stays inside the model file
        return meta
    return {}
