"""KITTI detection data: label files, image headers and image/label pairing.

A KITTI label file has one object per line with 15 whitespace-separated fields (guide 4.2.1),
optionally a 16th, the detection score::

    Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59

Class names are lower-cased as TLT does (``Car`` -> ``car``). Every malformed line is described as
``file:line: <what is wrong>, expected <what>``; with ``strict=True`` the first one raises
`DataError`, otherwise the object is skipped and the message kept in a `DataReport`.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from PIL import Image, JpegImagePlugin, PngImagePlugin

from tlt.errors import DataError

__all__ = [
    "LABEL_FIELDS",
    "DONT_CARE",
    "IMAGE_FORMATS",
    "KittiObject",
    "DataReport",
    "ImageInfo",
    "parse_label_text",
    "read_label_file",
    "probe_image",
    "normalise_extension",
    "pair_frames",
]

# The 15 KITTI fields in file order (the optional 16th is the score).
LABEL_FIELDS = (
    "type", "truncated", "occluded", "alpha", "x1", "y1", "x2", "y2",
    "height", "width", "length", "x", "y", "z", "rotation_y",
)
DONT_CARE = "dontcare"
# Image extensions the converter accepts -> the format name stored in frame/format.
IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG"}
_PIL_CLASSES = {"png": PngImagePlugin.PngImageFile, "jpeg": JpegImagePlugin.JpegImageFile}
_PNG_IEND = b"IEND\xaeB`\x82"
# How far from the end a complete file's end marker may sit (some writers pad after it).
_TAIL = 1024


class KittiObject(NamedTuple):
    """One labelled object, with the class name lower-cased and the box normalised (x1<=x2).

    A named tuple rather than a dataclass: it is built once per label line, and a frozen
    dataclass made label parsing the slowest step of a conversion.
    """

    object_class: str
    truncation: float
    occlusion: int
    observation_angle: float
    x1: float
    y1: float
    x2: float
    y2: float
    world_bbox_h: float
    world_bbox_w: float
    world_bbox_l: float
    world_bbox_x: float
    world_bbox_y: float
    world_bbox_z: float
    world_bbox_rot_y: float
    score: float | None = None


@dataclass
class DataReport:
    """What was wrong with a data set and what was skipped because of it.

    Attributes:
        messages: one ``file:line: what, expected what`` line per problem.
        skipped_objects: label lines that were dropped.
        skipped_frames: ids of frames dropped entirely (unreadable image or label file).
        images_without_labels: ids of images that have no label file (skipped, as TLT does).
        labels_without_images: ids of label files that have no image.
    """

    messages: list[str] = field(default_factory=list)
    skipped_objects: int = 0
    skipped_frames: list[str] = field(default_factory=list)
    images_without_labels: list[str] = field(default_factory=list)
    labels_without_images: list[str] = field(default_factory=list)

    def merge(self, other: "DataReport") -> None:
        """Add another report's findings to this one."""
        self.messages.extend(other.messages)
        self.skipped_objects += other.skipped_objects
        self.skipped_frames.extend(other.skipped_frames)
        self.images_without_labels.extend(other.images_without_labels)
        self.labels_without_images.extend(other.labels_without_images)

    def as_dict(self) -> dict:
        """The report as plain JSON-serialisable data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ImageInfo:
    """What the image header says: size in pixels and format (``png`` or ``jpeg``)."""

    width: int
    height: int
    format: str


def _problem(where: str, what: str, strict: bool, report: DataReport | None) -> None:
    message = f"{where}: {what}"
    if strict:
        raise DataError(message)
    if report is not None:
        report.messages.append(message)
        report.skipped_objects += 1


def _parse_line(fields: list[str], width: int | None, height: int | None) -> KittiObject | str:
    """Parse one split line: a KittiObject, or the description of what is wrong with it."""
    if len(fields) not in (15, 16):
        return f"{len(fields)} fields, expected 15 (or 16 with a score)"
    try:
        values = [float(text) for text in fields[1:]]
        finite = math.isfinite(math.fsum(values))
    except (ValueError, OverflowError):
        finite = False
    if not finite:  # the slow path only runs to name the bad field
        for i, text in enumerate(fields[1:], start=1):
            try:
                ok = math.isfinite(float(text))
            except ValueError:
                ok = False
            if not ok:
                name = LABEL_FIELDS[i] if i < 15 else "score"
                return f"field {i + 1} ({name}) is {text!r}, expected a number"
    object_class = fields[0].lower()
    dont_care = object_class == DONT_CARE
    trunc, occ, alpha, x1, y1, x2, y2 = values[:7]
    if occ != int(occ) or not (0 <= occ <= 3 or (dont_care and occ == -1)):
        return f"occlusion is {fields[2]}, expected an integer in 0..3"
    if not dont_care and not 0.0 <= trunc <= 1.0:
        return f"truncation is {fields[1]}, expected a number in [0, 1]"
    if dont_care:
        # DontCare regions are only masks: an inverted box is still a usable region.
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
    else:
        if x1 >= x2:
            return f"box has x1={fields[4]} >= x2={fields[6]}, expected x1 < x2 (left < right)"
        if y1 >= y2:
            return f"box has y1={fields[5]} >= y2={fields[7]}, expected y1 < y2 (top < bottom)"
    if min(x1, y1, x2, y2) < 0:
        for name, value in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2)):
            if value < 0:
                return f"negative coordinate {name}={value:g}, expected >= 0"
    if width is not None and height is not None and (x2 > width or y2 > height):
        return (f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is outside the {width}x{height} image, "
                f"expected x2 <= {width} and y2 <= {height}")
    return KittiObject(object_class, trunc, int(occ), alpha, x1, y1, x2, y2, *values[7:14],
                       score=values[14] if len(values) == 15 else None)


def parse_label_text(text: str, *, path: str = "<label>", width: int | None = None,
                     height: int | None = None, strict: bool = False,
                     report: DataReport | None = None) -> list[KittiObject]:
    """Parse the text of a KITTI label file.

    Args:
        text: the file's content.
        path: name used in messages (``path:line: ...``).
        width: image width; with ``height``, boxes beyond the image are malformed.
        height: image height.
        strict: raise `DataError` on the first malformed line instead of skipping it.
        report: collects the messages and the count of skipped objects.

    Returns:
        The valid objects, in file order. Blank lines are ignored.

    Raises:
        DataError: ``strict`` is set and a line is malformed.
    """
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        parsed = _parse_line(fields, width, height)
        if isinstance(parsed, str):
            _problem(f"{path}:{number}", parsed, strict, report)
        else:
            objects.append(parsed)
    return objects


def read_label_file(path: str | os.PathLike, *, display: str | None = None,
                    width: int | None = None, height: int | None = None, strict: bool = False,
                    report: DataReport | None = None) -> list[KittiObject]:
    """Read and parse a KITTI label file (see `parse_label_text`).

    Args:
        path: the local file.
        display: name used in messages instead of ``path`` (e.g. the original URI).
        width: image width, to check the boxes against.
        height: image height.
        strict: raise on the first malformed line.
        report: collects messages and skip counts.

    Raises:
        DataError: the file is not UTF-8 text, or ``strict`` and a line is malformed.
    """
    display = display or str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise DataError(f"{display}: cannot read the label file ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(f"{display}:{line}: not UTF-8 text ({err.reason} at byte {err.start}), "
                        "expected a KITTI label file") from None
    return parse_label_text(text, path=display, width=width, height=height, strict=strict,
                            report=report)


def probe_image(data: bytes, path: str, expected_format: str | None = None) -> ImageInfo:
    """Read an encoded image's size and format from its header, without decoding pixels.

    A truncated file is caught cheaply: a JPEG must end with its FFD9 end-of-image marker and a PNG
    with its IEND chunk.

    Args:
        data: the file's bytes.
        path: name used in messages.
        expected_format: ``png`` or ``jpeg`` to only try that decoder (faster); None tries both.

    Raises:
        DataError: the header cannot be read or the file is truncated.
    """
    try:
        # The format's own PIL class when it is known: Image.open's plugin dispatch cost as much
        # as reading the header itself.
        opener = _PIL_CLASSES[expected_format] if expected_format else functools.partial(
            Image.open, formats=list(_PIL_FORMATS.values()))
        with opener(io.BytesIO(data)) as image:
            width, height = image.size
            fmt = image.format.lower()
    except Exception as err:  # PIL raises many kinds (UnidentifiedImageError, SyntaxError ...)
        expected = " or ".join(f.upper() for f in ([expected_format] if expected_format
                                                    else _PIL_FORMATS))
        raise DataError(f"{path}: cannot read the image header ({err}), "
                        f"expected a {expected} image") from None
    tail = data[-_TAIL:]
    if fmt == "jpeg" and b"\xff\xd9" not in tail:
        raise DataError(f"{path}: truncated JPEG (no FFD9 end-of-image marker), "
                        "expected a complete JPEG file")
    if fmt == "png" and _PNG_IEND not in tail:
        raise DataError(f"{path}: truncated PNG (no IEND chunk), expected a complete PNG file")
    return ImageInfo(width, height, fmt)


def normalise_extension(extension: str) -> str:
    """``"png"``/``".PNG"`` -> ``".png"``; `DataError` for formats the converter cannot store."""
    ext = extension.strip().lower()
    if ext and not ext.startswith("."):
        ext = "." + ext
    if ext not in IMAGE_FORMATS:
        raise DataError(f"unknown image extension {extension!r} (kitti_config.image_extension), "
                        f"expected one of {', '.join(sorted(IMAGE_FORMATS))}")
    return ext


def pair_frames(image_dir: str | os.PathLike, label_dir: str | os.PathLike, extension: str,
                report: DataReport | None = None) -> dict[str, tuple[str, str]]:
    """Pair images and label files by frame id (the file name without extension).

    Images without a label file are skipped, as TLT does, and listed in the report together with
    label files without an image.

    Args:
        image_dir: local folder of images.
        label_dir: local folder of ``<frame id>.txt`` label files.
        extension: the images' extension (``.png``, ``.jpg`` ...), matched case-insensitively.
        report: receives ``images_without_labels`` and ``labels_without_images`` (sorted).

    Returns:
        ``{frame_id: (image_path, label_path)}`` in sorted frame-id order.
    """
    ext = extension.lower()
    images = {}
    with os.scandir(image_dir) as entries:
        for entry in entries:
            stem, dot, suffix = entry.name.rpartition(".")
            if dot and "." + suffix.lower() == ext and entry.is_file():
                images[stem] = entry.path
    labels = {}
    if os.path.isdir(label_dir):
        with os.scandir(label_dir) as entries:
            for entry in entries:
                if entry.name.endswith(".txt") and entry.is_file():
                    labels[entry.name[:-4]] = entry.path
    if report is not None:
        report.images_without_labels.extend(sorted(images.keys() - labels.keys()))
        report.labels_without_images.extend(sorted(labels.keys() - images.keys()))
    return {fid: (images[fid], labels[fid]) for fid in sorted(images.keys() & labels.keys())}
