"""Leftovers of killed publishes: leases that mark uploads in progress, and the sweep.

A publish uploads into a fresh folder ``<name>/<version>-<token>`` and commits by creating its
entry object. Killed in between (kill -9, a lost node), it leaves a folder that no entry points
at. To tell such a folder from one whose publisher is still uploading, every publish holds a
lease ``_pending/<name>/<version>-<token>.json`` (machine, pid) for as long as it runs,
refreshed by a heartbeat so a long upload keeps it fresh.

An uncommitted folder is an *orphan*, and is deleted by the next publish of that model, when
    - its lease names this machine and a process that no longer exists (a rerun on the same
      machine cleans up at once; "machine" is host name, boot and pid namespace, so a pid is
      only ever checked where it means the same process), or
    - its lease (or, without a lease, its newest file) is older than the grace period.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

from tlt.errors import StorageError
from tlt.io import storage
from tlt.io.registry_aliases import ALIASES_DIR
from tlt.io.registry_catalogue import ENTRIES_DIR

__all__ = ["PENDING_DIR", "DEFAULT_GRACE", "lease", "remove_orphans"]

_LOG = logging.getLogger(__name__)

PENDING_DIR = "_pending"
#: Seconds after which an uncommitted upload whose publisher cannot be checked is an orphan.
DEFAULT_GRACE = 3600.0


def _lease_uri(root: str, location: str) -> str:
    return storage.join(root, PENDING_DIR, location + ".json")


@contextlib.contextmanager
def lease(root: str, location: str, grace: float) -> Iterator[None]:
    """Hold the lease of an upload into ``location`` for the duration of the block.

    The lease is rewritten every ``grace / 4`` seconds (at most every minute) from a daemon
    thread. If the block raises, the upload's folder is deleted (best effort); the lease is
    removed either way.
    """
    uri = _lease_uri(root, location)
    body = json.dumps({"machine": _machine(), "pid": os.getpid(),
                       "location": location}).encode("utf-8")
    storage.write_bytes(uri, body)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(uri, body, stop, min(60.0, grace / 4)),
                            daemon=True, name=f"lease {location}")
    beat.start()
    try:
        yield
    except BaseException:
        with contextlib.suppress(StorageError):
            storage.delete_tree(storage.join(root, location))
        raise
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(StorageError):
            storage.delete(uri)


def _heartbeat(uri: str, body: bytes, stop: threading.Event, interval: float) -> None:
    while not stop.wait(max(interval, 0.05)):
        try:
            storage.write_bytes(uri, body)
        except StorageError as err:  # the upload itself will report a broken store
            _LOG.debug("lease refresh of %s failed: %s", uri, err)


def _machine() -> str:
    """Where a pid means one process: host name, boot id and pid namespace (Linux)."""
    parts = [socket.gethostname()]
    for probe in (lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                  lambda: os.readlink("/proc/self/ns/pid")):
        try:
            parts.append(probe())
        except OSError:
            parts.append("")
    return "|".join(parts)


def _process_gone(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False


def _lease_dead(root: str, location: str, stamp: float, now: float, grace: float) -> bool:
    """True when the publisher holding this lease is certainly gone or has gone quiet."""
    if now - stamp > grace:
        return True
    try:
        held = json.loads(storage.read_text(_lease_uri(root, location)))
    except (StorageError, ValueError):
        return False  # vanished or being rewritten: judge it again next time
    return (isinstance(held, dict) and held.get("machine") == _machine()
            and _process_gone(held.get("pid")))


def _relative_times(folder: str) -> dict[tuple[str, ...], float]:
    """Modification times of the files under ``folder``, keyed by their relative path parts."""
    return {tuple(uri[len(folder):].lstrip("/").replace("\\", "/").split("/")): stamp
            for uri, stamp in storage.list_times(folder).items()}


def _upload_folders(root: str, name: str) -> dict[str, float]:
    """Newest file time of every folder ``<name>/<label>`` of the model."""
    newest: dict[str, float] = {}
    for parts, stamp in _relative_times(storage.join(root, name)).items():
        if len(parts) >= 2:  # a file inside a label folder, not one lying in <name>/ itself
            location = f"{name}/{parts[0]}"
            newest[location] = max(stamp, newest.get(location, 0.0))
    return newest


def _leases(root: str, name: str) -> dict[str, float]:
    """Lease times by location (``<name>/<label>``)."""
    folder = storage.join(root, PENDING_DIR, name)
    return {f"{name}/{parts[0][:-len('.json')]}": stamp
            for parts, stamp in _relative_times(folder).items()
            if len(parts) == 1 and parts[0].endswith(".json") and not parts[0].startswith(".")}


def _stale_temporaries(root: str, name: str, now: float, grace: float) -> list[str]:
    """Local temporaries (dotfiles) of lease, entry and alias writes killed half-way."""
    stale = []
    for folder in (storage.join(root, PENDING_DIR, name), storage.join(root, ENTRIES_DIR, name)):
        stale += [storage.join(folder, parts[0]) for parts, stamp in _relative_times(folder).items()
                  if len(parts) == 1 and parts[0].startswith(".") and now - stamp > grace]
    # Alias and history writes leave ".<file>.<random>.tmp"; the ".<alias>.json.lock" files
    # beside the aliases are the swap's locks and stay.
    folder = storage.join(root, ALIASES_DIR, name)
    stale += [storage.join(folder, *parts) for parts, stamp in _relative_times(folder).items()
              if parts[-1].startswith(".") and parts[-1].endswith(".tmp") and now - stamp > grace]
    return stale


def remove_orphans(root: str, name: str, referenced: set[str], grace: float) -> list[str]:
    """Delete the uncommitted upload folders of model ``name`` and their stale leases.

    Args:
        root: registry root.
        name: the model whose folders are swept.
        referenced: locations (``<name>/<label>``) that committed entries point at.
        grace: seconds an upload without a checkable publisher is given.

    Returns:
        The locations deleted.
    """
    now = time.time()
    leases = _leases(root, name)
    folders = _upload_folders(root, name)
    removed = []
    for location, newest in sorted(folders.items()):
        if location in referenced:
            continue
        if location in leases:
            orphan = _lease_dead(root, location, leases[location], now, grace)
        else:  # no lease: a publisher of an older release, or one killed before its lease
            orphan = now - newest > grace
        if not orphan:
            continue
        storage.delete_tree(storage.join(root, location))
        storage.delete(_lease_uri(root, location))
        removed.append(location)
    for location, stamp in leases.items():
        if location not in folders and _lease_dead(root, location, stamp, now, grace):
            storage.delete(_lease_uri(root, location))
    for uri in _stale_temporaries(root, name, now, grace):
        storage.delete(uri)
    if removed:
        _LOG.info("removed %d orphaned upload folder(s) of %s: %s", len(removed), name,
                  ", ".join(removed))
    return removed
