"""Folder-per-class classification data sets (guide 4.1): discovery, checks and the class map.

A split folder holds one sub-folder per class with its JPEG/PNG images::

    train/audi/1.jpg, train/bmw/01.png, ...

Classes are the sub-folder names in sorted order, so every split and every run agrees on the
index of each class. The tf.data input pipeline lives in `tlt.data.classification_input`.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tlt.data.images import is_image_file, probe_image
from tlt.errors import DataError
from tlt.io.atomic import atomic_write_text

__all__ = ["ImageFolderSplit", "scan_image_folder", "check_same_classes", "write_class_map",
           "read_class_map"]

_log = logging.getLogger(__name__)


@dataclass
class ImageFolderSplit:
    """The readable images of one split folder and their class indices."""

    root: Path
    class_names: list[str]
    files: list[str]
    labels: list[int]
    skipped: list[str] = field(default_factory=list)  # "path: reason" of unreadable images

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.files)

    def class_counts(self) -> dict[str, int]:
        """Number of readable images per class name."""
        counts = dict.fromkeys(self.class_names, 0)
        for label in self.labels:
            counts[self.class_names[label]] += 1
        return counts


def _probe_or_reason(path: Path) -> str | None:
    try:
        probe_image(path)
    except DataError as err:
        return str(err)
    return None


def scan_image_folder(root: str | Path, *, check_images: bool = True,
                      class_names: list[str] | None = None, workers: int = 8) -> ImageFolderSplit:
    """List the images of a folder-per-class split.

    Args:
        root: local folder with one sub-folder per class (stage remote data with tlt.io first).
        check_images: probe every image header and end marker; unreadable ones are skipped,
            logged by path and counted in ``skipped`` rather than failing the run.
        class_names: expected classes (e.g. the training split's); a different set is an error.
        workers: threads for the probes (I/O bound).

    Raises:
        DataError: the folder does not exist, has no class folders, a class folder has no
            readable image, or the class set differs from ``class_names``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data set folder does not exist")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root}: no class folders found (expected one sub-folder per class)")
    if class_names is not None:
        check_same_classes(list(class_names), found, "training", str(root))
        found = list(class_names)

    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(found):
        images = sorted(p for p in (root / name).rglob("*") if p.is_file() and is_image_file(p))
        if not images:
            raise DataError(f"{root / name}: class folder '{name}' has no .jpg/.jpeg/.png images")
        files.extend(images)
        labels.extend([index] * len(images))

    skipped: list[str] = []
    if check_images:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            reasons = list(pool.map(_probe_or_reason, files))
        keep = [r is None for r in reasons]
        skipped = [r for r in reasons if r is not None]
        for reason in skipped:
            _log.warning("skipping %s", reason)
        files = [f for f, k in zip(files, keep) if k]
        labels = [lab for lab, k in zip(labels, keep) if k]
        if skipped:
            _log.warning("%s: skipped %d unreadable image(s) of %d", root, len(skipped), len(keep))
        present = set(labels)
        for index, name in enumerate(found):
            if index not in present:
                raise DataError(f"{root / name}: class folder '{name}' has no readable image")
    return ImageFolderSplit(root=root, class_names=found, files=[str(f) for f in files],
                            labels=labels, skipped=skipped)


def check_same_classes(expected: list[str], found: list[str], expected_from: str, where: str) -> None:
    """Raise DataError naming the differences when two splits have different class sets."""
    if sorted(expected) == sorted(found):
        return
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"unexpected {', '.join(extra)}")
    raise DataError(f"{where}: class folders differ from the {expected_from} split ({'; '.join(parts)})")


def write_class_map(path: str | Path, class_names: list[str]) -> None:
    """Write the ``{"class name": index}`` JSON map that tlt-infer's ``-cm`` reads."""
    mapping = {name: index for index, name in enumerate(class_names)}
    atomic_write_text(path, json.dumps(mapping, indent=2) + "\n")


def read_class_map(path: str | Path) -> list[str]:
    """Read a class map JSON (``{"name": index}``) into the list of names ordered by index."""
    try:
        raw = Path(path).read_bytes()
        mapping = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text ({err.reason} at byte {err.start}), "
                        "expected a JSON class map") from None
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read class map ({err})") from None
    if not isinstance(mapping, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in mapping.values()):
        raise DataError(f"{path}: class map must be a JSON object of class name -> index")
    names = sorted(mapping, key=mapping.__getitem__)
    if sorted(mapping.values()) != list(range(len(names))):
        raise DataError(f"{path}: class indices must be 0..{len(names) - 1} without gaps")
    return names
