"""Cheap image checks shared by the data readers: size and integrity without decoding pixels.

Decoding every image up front would cost more than the work it protects, so integrity is judged
from the header (PIL) and the format's end marker (JPEG EOI, PNG IEND): that catches truncated
files, which are by far the most common corruption in real data sets.
"""

from __future__ import annotations

from pathlib import Path

from tlt.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "is_image_file", "probe_image"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

_JPEG_EOI = b"\xff\xd9"
_PNG_IEND = b"IEND\xaeB`\x82"


def is_image_file(path: str | Path) -> bool:
    """True when the file name has a supported image extension (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def probe_image(path: str | Path) -> tuple[int, int, str]:
    """Return ``(width, height, format)`` of an image, checking it is complete.

    Args:
        path: a local image file (JPEG or PNG).

    Returns:
        Width and height in pixels and PIL's format name (``"JPEG"`` or ``"PNG"``).

    Raises:
        DataError: the file cannot be read, is not a JPEG/PNG image, or is truncated.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            fmt = img.format or ""
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable image ({err.__class__.__name__}: {err})") from None
    try:
        with open(path, "rb") as f:
            f.seek(-16, 2)
            tail = f.read()
    except OSError as err:
        raise DataError(f"{path}: unreadable image ({err})") from None
    if fmt == "JPEG" and _JPEG_EOI not in tail:
        raise DataError(f"{path}: truncated JPEG image (no end-of-image marker)")
    if fmt == "PNG" and not tail.endswith(_PNG_IEND):
        raise DataError(f"{path}: truncated PNG image (no IEND chunk)")
    if fmt not in ("JPEG", "PNG"):
        raise DataError(f"{path}: unsupported image format {fmt or 'unknown'}, expected JPEG or PNG")
    return width, height, fmt
