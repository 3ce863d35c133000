"""Mirror a training results folder to object storage, so a retried pod resumes from its checkpoint.

A pod's disk dies with the pod. While a stage trains, `CheckpointMirror` copies its results folder
(checkpoints, ``latest.json``, the training log, the run identity) to a folder under the run's
pipeline root, every few seconds and once more when training ends or fails; a new pod of the same
task first copies that mirror back (`CheckpointMirror.restore`) and the trainer then resumes from
the newest complete checkpoint as it does on a laptop.

Only complete files are copied: trainers write every file under a temporary name starting with
"." and rename it into place (`tlt.io.atomic`, the checkpoint callbacks), so names starting with
"." are skipped. Within one push, ``latest.json`` and ``metadata.json`` go last and files deleted
locally (old checkpoints) are deleted from the mirror after the uploads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Mapping

from tlt.errors import StorageError
from tlt.io import storage

__all__ = ["CheckpointMirror", "mirror_uri", "inputs_digest"]

_log = logging.getLogger(__name__)
# Files a reader uses to find the others: uploaded after them.
_LAST = ("latest.json", "metadata.json")


def inputs_digest(params: Mapping[str, Any], inputs: Mapping[str, str], skip: tuple[str, ...] = ()) -> str:
    """A short digest of what a training task trains on: its parameters (except ``skip``) and the
    ``metadata.json`` of each input artifact folder (its file names and sizes where it has none).

    Two tasks of one run that train different things (the iterations of a prune sweep) get
    different digests; a retried pod of one task gets the same.
    """
    digest = hashlib.sha256(json.dumps({k: v for k, v in params.items() if k not in skip},
                                       sort_keys=True, default=str).encode())
    for name in sorted(inputs):
        folder = Path(inputs[name])
        digest.update(name.encode())
        meta = folder / "metadata.json"
        if meta.is_file():
            digest.update(meta.read_bytes())
        elif folder.is_dir():
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def mirror_uri(root: str, run_id: str, task: str, digest: str) -> str:
    """``<root>/<run_id>/<task>-<digest>`` (without the run level when ``run_id`` is empty)."""
    return storage.join(root, *([run_id] if run_id else []), f"{task}-{digest}")


class CheckpointMirror:
    """Keep ``remote`` a copy of the local folder ``local`` while a stage trains.

    Use it as a context manager around training: entering restores the mirror into ``local`` and
    starts a background thread that pushes changes every ``interval`` seconds; leaving (also by an
    exception, e.g. `tlt.errors.Interrupted` on SIGTERM) stops the thread and pushes once more.

    Args:
        local: the results folder the trainer writes.
        remote: the mirror (s3://, gs:// or a local folder).
        interval: seconds between pushes.
    """

    def __init__(self, local: str | os.PathLike, remote: str, *, interval: float = 15.0):
        self.local = Path(local)
        self.remote = remote
        self.interval = interval
        self._pushed: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self) -> list[str]:
        """Copy the mirror's files that ``local`` lacks into it (an existing local file is newer
        or the same, so it is kept); return their relative paths."""
        self.local.mkdir(parents=True, exist_ok=True)
        restored = []
        for uri in storage.list_files(self.remote):
            rel = uri[len(self.remote.rstrip("/")) + 1:]
            target = self.local / rel
            if _is_temporary(rel) or target.exists():
                continue
            storage.download_file(uri, target)
            restored.append(rel)
        with self._lock:
            self._pushed = {rel: sig for rel, sig in self._snapshot().items() if rel in restored}
        if restored:
            _log.info("restored %d file(s) of an earlier attempt from %s", len(restored), self.remote)
        return sorted(restored)

    def push(self) -> list[str]:
        """Upload new and changed files, then delete from the mirror what ``local`` no longer has;
        return the relative paths uploaded."""
        with self._lock:
            now = self._snapshot()
            changed = [rel for rel, sig in now.items() if self._pushed.get(rel) != sig]
            changed.sort(key=lambda rel: (Path(rel).name in _LAST, rel))
            uploaded = []
            for rel in changed:
                try:
                    storage.upload_file(self.local / rel, storage.join(self.remote, *rel.split("/")))
                except StorageError:
                    if (self.local / rel).exists():
                        raise
                    continue  # deleted since listed (an old checkpoint): removed below next time
                self._pushed[rel] = now[rel]
                uploaded.append(rel)
            for rel in sorted(set(self._pushed) - set(now)):
                storage.delete(storage.join(self.remote, *rel.split("/")))
                del self._pushed[rel]
            return uploaded

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        """Relative path (with '/') -> (size, mtime in ns) of every complete file under ``local``."""
        found = {}
        for folder, dirs, files in os.walk(self.local):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                path = Path(folder) / name
                rel = path.relative_to(self.local).as_posix()
                if _is_temporary(rel):
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                found[rel] = (st.st_size, st.st_mtime_ns)
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.push()
            except StorageError as err:  # a store hiccup: the next push tries again
                _log.warning("checkpoint mirror: %s", err)

    def __enter__(self) -> "CheckpointMirror":
        self.restore()
        self._thread = threading.Thread(target=self._run, name="checkpoint-mirror", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.push()
        except StorageError as err:
            if exc is None:
                raise
            # Training already failed: report that failure, not the mirror's.
            _log.warning("checkpoint mirror: final push failed: %s", err)


def _is_temporary(rel: str) -> bool:
    """A name of a file still being written (every part of it starting with '.' is temporary)."""
    return any(part.startswith(".") for part in rel.split("/"))
