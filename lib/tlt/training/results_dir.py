"""The results folder of a training run: open it safely and sweep a killed run's temporary files.

Every file a trainer writes goes through a temporary sibling that is renamed into place
(`tlt.io.atomic`, the checkpoint callbacks). A process killed with ``kill -9`` between the two
leaves that temporary behind; the rerun on the same folder removes it before it writes anything
of its own, so a finished folder holds only complete files.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from tlt.errors import StorageError

__all__ = ["open_results_dir", "remove_leftovers", "LEFTOVER_SUBDIRS"]

_log = logging.getLogger(__name__)

# Folders a trainer writes into, relative to the results folder. Only these are swept: a results
# folder may be any user folder (even ".") and its other content is none of our business.
LEFTOVER_SUBDIRS = (".", "checkpoints", "validation")

# Temporary names of tlt.io.atomic (".<name>.<random>.tmp" files, ".<name>.<random>.partial"
# and ".<name>.old-<pid>" folders) and of the checkpoint callbacks (".partial-<pid>-<name>").
_TEMP_FILE = re.compile(r"^\..+\.tmp$|^\.partial-\d+-.+$")
_TEMP_DIR = re.compile(r"^\..+\.partial$|^\..+\.old-\d+$")


def open_results_dir(path: str | Path) -> Path:
    """Create the results folder (and its parents) if needed and return it.

    Raises:
        StorageError: ``path`` (or one of its parents) exists and is not a folder, or it cannot
            be created.
    """
    results = Path(path)
    if results.exists() and not results.is_dir():
        raise StorageError(f"results folder {results} is an existing file; pass a folder to -r")
    try:
        results.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StorageError(f"results folder {results}: a parent of it is a file, not a "
                           f"folder") from None
    except OSError as err:
        raise StorageError(f"results folder {results} cannot be created: "
                           f"{err.strerror or err}") from None
    return results


def remove_leftovers(results_dir: str | Path) -> list[Path]:
    """Delete the temporary files and folders a killed run left in the results folder.

    Call it before the run writes anything: two trainers on one folder are not supported, so
    every temporary found then belongs to a dead process.

    Returns:
        The paths removed (also logged).
    """
    removed: list[Path] = []
    for sub in LEFTOVER_SUBDIRS:
        folder = Path(results_dir) / sub
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and not entry.is_symlink() and _TEMP_DIR.match(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.is_file() and _TEMP_FILE.match(entry.name):
                entry.unlink(missing_ok=True)
            else:
                continue
            removed.append(entry)
    if removed:
        _log.info("removed %d temporary file(s) of an interrupted run: %s", len(removed),
                  ", ".join(str(p.relative_to(results_dir)) for p in removed))
    return removed
