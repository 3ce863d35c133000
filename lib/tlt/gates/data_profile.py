"""What a new data set holds, counted for the data gate: frames, label lines, classes, defects.

Two layouts: a KITTI detection set (``<root>/images`` + ``<root>/labels``, parsed and validated
by `tlt.data.kitti`, so a line the converter would skip counts as malformed here) and a
folder-per-class classification set (``<root>/<class>/*.png``; an unreadable image is its
defect). Roots may be local folders or gs:// / s3:// prefixes (staged with `tlt.io.storage`).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tlt.data import images as image_files
from tlt.data import kitti
from tlt.errors import DataError
from tlt.io import storage

__all__ = ["DataProfile", "profile_kitti", "profile_image_folders"]

# Problem lines kept in a profile; the counts always cover everything.
_MAX_PROBLEMS = 50


@dataclass
class DataProfile:
    """Counts of one data set.

    Attributes:
        source: the root it was read from (as given).
        kind: ``detection`` or ``classification``.
        num_frames: frames (image + label file pairs) or images.
        num_labels: non-blank label lines (detection) or images (classification).
        malformed_labels: label lines `tlt.data.kitti` rejects (0 for classification).
        unreadable_images: images whose header or end marker cannot be read.
        class_counts: valid objects (detection, lower-cased class names) or readable images per
            class folder.
        problems: the first ``file:line: what, expected what`` messages.
        unpaired: ``{"images_without_labels": n, "labels_without_images": n}`` (detection).
    """

    source: str
    kind: str
    num_frames: int = 0
    num_labels: int = 0
    malformed_labels: int = 0
    unreadable_images: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unpaired: dict[str, int] = field(default_factory=dict)

    def note(self, message: str) -> None:
        """Keep a problem message (up to a limit)."""
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(message)


@contextlib.contextmanager
def _local(uri: str) -> Iterator[Path | None]:
    """A local copy of a folder, or None when there is none (missing local path or prefix)."""
    if storage.is_remote(uri):
        if not storage.isdir(uri):
            yield None
            return
        with storage.staged_input(uri) as path:
            yield path
    else:
        yield Path(uri) if os.path.isdir(uri) else None


def _no_frames(root: str, why: str) -> DataError:
    return DataError(f"new data {root} holds no frames: {why}")


def profile_kitti(root: str | os.PathLike, *, image_dir: str = "images",
                  label_dir: str = "labels", image_extension: str = ".png") -> DataProfile:
    """Count a KITTI detection data set: frames, label lines, malformed lines, classes.

    Every image header is probed (as convert does) so boxes beyond the image are malformed too;
    the labels of an unreadable image are still parsed, without the size check.

    Args:
        root: data set root, local or gs:// / s3://.
        image_dir: image folder under the root.
        label_dir: label folder under the root.
        image_extension: the images' extension (``.png``, ``jpg`` ...).

    Raises:
        DataError: the root holds no frames (no image folder, or no image with a label file),
            named in one line; or an image extension convert cannot store.
    """
    root = os.fspath(root)
    ext = kitti.normalise_extension(image_extension)
    image_uri, label_uri = storage.join(root, image_dir), storage.join(root, label_dir)
    profile = DataProfile(source=root, kind="detection")
    with _local(image_uri) as images, _local(label_uri) as labels:
        if images is None or labels is None:
            folder = image_uri if images is None else label_uri
            raise _no_frames(root, f"folder {folder} does not exist")
        unpaired = kitti.DataReport()
        pairs = kitti.pair_frames(images, labels, ext, unpaired)
        if not pairs:
            raise _no_frames(root, f"no {ext} image in {image_uri} has a label file in "
                                   f"{label_uri}")
        profile.unpaired = {"images_without_labels": len(unpaired.images_without_labels),
                            "labels_without_images": len(unpaired.labels_without_images)}
        counts: Counter = Counter()
        for fid, (image, label) in pairs.items():
            size = _image_size(profile, image, storage.join(image_uri, os.path.basename(image)),
                               kitti.IMAGE_FORMATS[ext])
            objects = _read_labels(profile, label, storage.join(label_uri, f"{fid}.txt"), size)
            counts.update(o.object_class for o in objects)
        profile.num_frames = len(pairs)
        profile.class_counts = dict(sorted(counts.items()))
    return profile


def _image_size(profile: DataProfile, path: str, display: str,
                fmt: str) -> tuple[int, int] | None:
    try:
        info = kitti.probe_image(Path(path).read_bytes(), display, fmt)
    except (DataError, OSError) as err:
        profile.unreadable_images += 1
        profile.note(str(err))
        return None
    return info.width, info.height


def _read_labels(profile: DataProfile, path: str, display: str,
                 size: tuple[int, int] | None) -> list[kitti.KittiObject]:
    report = kitti.DataReport()
    width, height = size or (None, None)
    try:
        objects = kitti.read_label_file(path, display=display, width=width, height=height,
                                        report=report)
    except DataError as err:  # not UTF-8: every line of the file is unusable
        lines = sum(1 for raw in Path(path).read_bytes().splitlines() if raw.strip())
        profile.num_labels += lines
        profile.malformed_labels += lines
        profile.note(str(err))
        return []
    profile.num_labels += len(objects) + report.skipped_objects
    profile.malformed_labels += report.skipped_objects
    for message in report.messages:
        profile.note(message)
    return objects


def profile_image_folders(root: str | os.PathLike) -> DataProfile:
    """Count a folder-per-class classification set: readable images per class folder.

    An empty class folder counts 0 images (the gate then names the class as missing).

    Args:
        root: folder with one sub-folder per class, local or gs:// / s3://.

    Raises:
        DataError: the root does not exist or holds no image in any class folder.
    """
    root = os.fspath(root)
    profile = DataProfile(source=root, kind="classification")
    with _local(root) as local:
        if local is None:
            raise _no_frames(root, "the folder does not exist")
        classes = sorted(p.name for p in local.iterdir() if p.is_dir()
                         and not p.name.startswith("."))
        for name in classes:
            readable = 0
            for path in sorted(p for p in (local / name).rglob("*")
                               if p.is_file() and image_files.is_image_file(p)):
                profile.num_frames += 1
                try:
                    image_files.probe_image(path)
                    readable += 1
                except DataError as err:
                    profile.unreadable_images += 1
                    profile.note(str(err).replace(str(local), root, 1))
            profile.class_counts[name] = readable
    if profile.num_frames == 0:
        raise _no_frames(root, "expected one sub-folder per class holding .jpg/.jpeg/.png images"
                         + ("" if classes else " (found no sub-folder)"))
    profile.num_labels = profile.num_frames
    return profile
