"""A model registry: a folder on local disk, gs:// or s3:// with an ``index.json`` at its root.

This replaces NGC for ``tlt-pull``. Layout::

    <root>/index.json                  the catalogue (below)
    <root>/<name>/<version>/<files>    the files of one published version

``index.json``::

    {"format": "tlt-model-registry", "format_version": 1,
     "models": {"<name>": {"application": "Classification", "framework": "TLT",
                           "precision": "FP32", "description": "...",
                           "versions": {"<version>": {"location": "<name>/<version>",
                                                      "created": "<UTC ISO time>", "size": <bytes>,
                                                      "files": [{"path", "size", "sha256"}],
                                                      "metadata": {...}}}}}}

Publishing uploads the files first and rewrites the index last (one atomic object put), so a
reader never sees a version whose files are not all there. The index is re-read just before the
rewrite, so concurrent publishes of different models both survive; on a local root a file lock
serialises them completely. Replacing a version (``overwrite``) uploads to a fresh location and
deletes the old files only after the index points at the new ones.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from tqdm import tqdm

from tlt.errors import ModelFileError, RegistryError, StorageError
from tlt.io import storage
from tlt.io.atomic import atomic_path

__all__ = ["Registry", "ModelInfo", "VersionInfo", "FileInfo", "INDEX_NAME", "APPLICATIONS"]

_LOG = logging.getLogger(__name__)

INDEX_NAME = "index.json"
_FORMAT = "tlt-model-registry"
_FORMAT_VERSION = 1
# Names end up in object keys and local folder names: no slashes, no leading dot.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
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
        root_uri: the registry root (holding ``index.json``).
    """

    def __init__(self, root_uri: str | os.PathLike):
        root = os.fspath(root_uri)
        if root.startswith("file://"):  # the file lock below needs a plain path
            root = root[len("file://"):]
        self.root = root.rstrip("/") or "/"
        self.index_uri = storage.join(self.root, INDEX_NAME)

    def __repr__(self) -> str:
        return f"Registry({self.root!r})"

    # ---------------------------------------------------------------------------- reading

    def list_models(self) -> list[ModelInfo]:
        """All models, sorted by name.

        Raises:
            RegistryError: no or malformed index.json.
        """
        models = self._read_index(required=True)["models"]
        return [self._model_info(name, models[name]) for name in sorted(models)]

    def list_versions(self, name: str) -> list[VersionInfo]:
        """The versions of model ``name``, oldest (lowest) first.

        Raises:
            RegistryError: no index, or no such model.
        """
        entry = self._model_entry(self._read_index(required=True), name)
        return [self._version_info(name, v, entry["versions"][v])
                for v in sorted(entry["versions"], key=_version_key)]

    def latest_version(self, name: str) -> str:
        """The highest version of model ``name`` (natural order: "10" after "9").

        Raises:
            RegistryError: no index, or no such model.
        """
        return self._model_info(name, self._model_entry(self._read_index(True), name)).latest_version

    def get_version(self, name: str, version: str | int) -> VersionInfo:
        """The catalogue entry of one version.

        Raises:
            RegistryError: no index, no such model or no such version.
        """
        version = str(version)
        entry = self._model_entry(self._read_index(required=True), name)
        return self._version_info(name, version, self._version_entry(name, entry, version))

    # ---------------------------------------------------------------------------- pull

    def pull(self, name: str, version: str | int, dest_dir: str | os.PathLike, *,
             progress: bool = False) -> list[Path]:
        """Download one version's files into ``dest_dir`` and verify their SHA-256.

        Each file is downloaded to a temporary sibling and renamed into place only once its
        checksum matches, so ``dest_dir`` never holds a corrupt file.

        Args:
            name: model name.
            version: version to download.
            dest_dir: local folder; created if needed. Files keep their relative paths.
            progress: show a tqdm byte counter on stderr.

        Returns:
            The local paths written, in index order.

        Raises:
            RegistryError: unknown model/version, a listed file is missing, or a checksum differs.
            StorageError: a download failed.
        """
        info = self.get_version(name, version)
        dest = Path(dest_dir)
        written: list[Path] = []
        with tqdm(total=info.size, unit="B", unit_scale=True, disable=not progress,
                  desc=f"{name}:{info.version}") as bar:
            for f in info.files:
                uri = storage.join(self.root, info.location, f.path)
                if not storage.exists(uri):
                    raise RegistryError(f"registry {self.root}: {uri} is listed in {INDEX_NAME} "
                                        f"but missing")
                target = dest.joinpath(*PurePosixPath(f.path).parts)
                with atomic_path(target) as tmp:
                    storage.download_file(uri, tmp)
                    got = _sha256_file(tmp)
                    if got != f.sha256:
                        raise RegistryError(f"{uri}: sha256 mismatch after download (index says "
                                            f"{f.sha256}, got {got}); the registry copy is corrupt")
                written.append(target)
                bar.update(f.size)
        return written

    # ---------------------------------------------------------------------------- publish

    def publish(self, name: str, version: str | int,
                files: str | os.PathLike | Sequence[str | os.PathLike], *,
                metadata: dict | None = None, task: str | None = None,
                framework: str | None = None, precision: str | None = None,
                description: str | None = None, overwrite: bool = False,
                progress: bool = False) -> VersionInfo:
        """Publish local files as ``name`` version ``version``; creates the registry if needed.

        Args:
            name: model name (letters, digits, ``. _ -``).
            version: version label (same characters), e.g. ``1`` or ``2024.06``.
            files: a local folder (its whole tree is published), one file, or a list of files
                and folders (each kept under its base name).
            metadata: stored with the version. Missing keys are filled from the metadata of a
                plain .tlt/.etlt file among ``files``.
            task: ``classification`` or ``detection`` (shown as the Application column); when
                None, kept from an earlier version or taken from the metadata's ``task``.
            framework: catalogue column, default ``TLT`` (or the earlier value).
            precision: catalogue column, default ``FP32`` (or the earlier value).
            description: free text for the catalogue.
            overwrite: replace an existing version instead of failing.
            progress: show a tqdm byte counter on stderr.

        Returns:
            The new version's catalogue entry.

        Raises:
            RegistryError: bad name/version, no files, version exists, malformed index.
            StorageError: an upload failed (the index is then left unchanged).
        """
        version = str(version)
        for label, value in (("model name", name), ("version", version)):
            if not _NAME_RE.match(value):
                raise RegistryError(f"invalid {label} {value!r}: use letters, digits, '.', '_' "
                                    f"and '-' (at most 128, not starting with '.', '_' or '-')")
        local = self._collect(files)
        index = self._read_index(required=False)
        old = index["models"].get(name, {}).get("versions", {}).get(version)
        if old is not None and not overwrite:
            raise self._exists_error(name, version)

        location = f"{name}/{version}"
        if old is not None or storage.isdir(storage.join(self.root, location)):
            # Never write over files a reader may be pulling right now.
            location = f"{name}/{version}-{secrets.token_hex(4)}"
        entries = []
        with tqdm(total=sum(p.stat().st_size for p, _ in local), unit="B", unit_scale=True,
                  disable=not progress, desc=f"publish {name}:{version}") as bar:
            for path, rel in local:
                entries.append({"path": rel, "size": path.stat().st_size,
                                "sha256": _sha256_file(path)})
                storage.upload_file(path, storage.join(self.root, location, rel))
                bar.update(path.stat().st_size)

        meta = dict(metadata or {})
        for key, value in _model_file_metadata(local).items():
            meta.setdefault(key, value)
        version_entry = {"location": location, "created": _now(),
                         "size": sum(e["size"] for e in entries), "files": entries,
                         "metadata": meta}
        with self._lock():
            # Re-read: another publisher may have added models since we started uploading.
            index = self._read_index(required=False)
            model = index["models"].setdefault(name, {"versions": {}})
            replaced = model["versions"].get(version)
            if replaced is not None and not overwrite:
                # Lost a race with a publisher of the same version: drop our upload unless it
                # went to the very folder the winner's entry points at.
                if replaced.get("location") != location:
                    storage.delete_tree(storage.join(self.root, location))
                raise self._exists_error(name, version)
            application = APPLICATIONS.get(task, task.title()) if task else None
            if application is None and not model.get("application") and meta.get("task"):
                application = APPLICATIONS.get(meta["task"], str(meta["task"]).title())
            model["application"] = application or model.get("application", "")
            model["framework"] = framework or model.get("framework", "TLT")
            model["precision"] = precision or model.get("precision", "FP32")
            model["description"] = (description if description is not None
                                    else model.get("description", ""))
            model["versions"][version] = version_entry
            storage.write_text(self.index_uri, json.dumps(index, indent=2, sort_keys=True) + "\n")
        if replaced is not None and replaced.get("location") not in (None, location):
            try:
                storage.delete_tree(storage.join(self.root, replaced["location"]))
            except StorageError as err:  # the index is already right; stale files only cost space
                _LOG.warning("could not delete the replaced files of %s:%s: %s", name, version, err)
        _LOG.info("published %s:%s (%d files) to %s", name, version, len(entries), self.root)
        return self._version_info(name, version, version_entry)

    # ---------------------------------------------------------------------------- internals

    def _exists_error(self, name: str, version: str) -> RegistryError:
        return RegistryError(f"version {version} of '{name}' already exists in registry "
                             f"{self.root}; pass overwrite=True (tlt-pull --overwrite) to replace it")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise index updates on a local root; object stores rely on the re-read."""
        if storage.is_remote(self.root):
            yield
            return
        import fcntl

        Path(self.root).mkdir(parents=True, exist_ok=True)
        with open(Path(self.root) / ".index.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_index(self, required: bool) -> dict:
        if not storage.exists(self.index_uri):
            if required:
                raise RegistryError(f"registry {self.root} has no {INDEX_NAME} "
                                    f"(is this a registry?)")
            return {"format": _FORMAT, "format_version": _FORMAT_VERSION, "models": {}}
        try:
            index = json.loads(storage.read_text(self.index_uri))
        except ValueError as err:
            raise RegistryError(f"{self.index_uri} is not valid JSON: {err}") from err
        if not isinstance(index, dict) or not isinstance(index.get("models"), dict):
            raise RegistryError(f"{self.index_uri} is malformed: expected an object with a "
                                f"'models' object")
        if index.get("format_version", _FORMAT_VERSION) > _FORMAT_VERSION:
            raise RegistryError(f"{self.index_uri} has format_version "
                                f"{index['format_version']}; this release reads "
                                f"{_FORMAT_VERSION}")
        for name, model in index["models"].items():
            if not isinstance(model, dict) or not isinstance(model.get("versions"), dict):
                raise RegistryError(f"{self.index_uri} is malformed: models.{name}.versions "
                                    f"must be an object")
        return index

    def _model_entry(self, index: dict, name: str) -> dict:
        models = index["models"]
        if name not in models:
            available = ", ".join(sorted(models)) or "none"
            raise RegistryError(f"model '{name}' not found in registry {self.root}; "
                                f"available: {available}")
        return models[name]

    def _version_entry(self, name: str, model: dict, version: str) -> dict:
        versions = model["versions"]
        if version not in versions:
            available = ", ".join(sorted(versions, key=_version_key)) or "none"
            raise RegistryError(f"version {version} of '{name}' not found; available: {available}")
        return versions[version]

    def _model_info(self, name: str, model: dict) -> ModelInfo:
        versions = tuple(sorted(model["versions"], key=_version_key))
        latest = versions[-1] if versions else ""
        return ModelInfo(name=name, application=str(model.get("application", "")),
                         framework=str(model.get("framework", "")),
                         precision=str(model.get("precision", "")),
                         description=str(model.get("description", "")), versions=versions,
                         latest_version=latest,
                         last_modified=str(model["versions"][latest].get("created", ""))
                         if latest else "")

    def _version_info(self, name: str, version: str, entry: dict) -> VersionInfo:
        where = f"{self.index_uri}: models.{name}.versions.{version}"
        try:
            files = tuple(FileInfo(str(f["path"]), int(f["size"]), str(f["sha256"]))
                          for f in entry["files"])
            location = str(entry.get("location", f"{name}/{version}"))
        except (KeyError, TypeError, ValueError) as err:
            raise RegistryError(f"{where} is malformed: {err!r}") from err
        for f in files:
            parts = PurePosixPath(f.path).parts
            # The index decides local file names on pull: refuse anything leaving dest_dir.
            if not parts or f.path.startswith("/") or ".." in parts:
                raise RegistryError(f"{where}: unsafe file path {f.path!r}")
        return VersionInfo(name=name, version=version, created=str(entry.get("created", "")),
                           size=int(entry.get("size", sum(f.size for f in files))), files=files,
                           metadata=dict(entry.get("metadata") or {}), location=location)

    def _collect(self, files) -> list[tuple[Path, str]]:
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
