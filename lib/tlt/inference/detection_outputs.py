"""What ``tlt-infer detection`` reads and writes: the input images, the output folder, KITTI label
lines with TLT's score field, and the box overlays (guide 7.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tlt.data.images import is_image_file
from tlt.errors import DataError
from tlt.io.atomic import atomic_path, atomic_write_text
from tlt.metrics.detection import Detection

__all__ = ["LABELS_DIR", "ANNOTATED_DIR", "DEFAULT_PALETTE", "FrameDetections", "list_input_images",
           "check_output_dir", "kitti_score", "kitti_line", "draw_detections", "to_source_pixels",
           "write_frame_outputs"]

LABELS_DIR = "labels"
ANNOTATED_DIR = "images_annotated"
# Box colours by class index when the cluster file gives none: TLT's green, magenta, cyan first.
DEFAULT_PALETTE = ((0, 255, 0), (255, 0, 255), (0, 255, 255), (255, 0, 0), (0, 0, 255),
                   (255, 255, 0), (255, 128, 0), (128, 0, 255))


@dataclass
class FrameDetections:
    """The boxes found in one image, in its own pixels."""

    path: str
    width: int
    height: int
    detections: list[Detection]


def list_input_images(inference_input: str | Path) -> list[Path]:
    """The image itself, or the images (.jpg/.jpeg/.png) directly inside a folder, sorted.

    Raises:
        DataError: the path does not exist, the folder holds no image, or two images of the
            folder share a name stem (their label files would collide).
    """
    path = Path(inference_input)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{inference_input}: no such image or folder (-i)")
    files = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise DataError(f"{inference_input}: no .jpg/.jpeg/.png images in this folder")
    stems: dict[str, Path] = {}
    for p in files:
        if p.stem in stems:
            raise DataError(f"{stems[p.stem]} and {p} share the name {p.stem!r}: their KITTI label "
                            f"files would both be {p.stem}.txt; rename one")
        stems[p.stem] = p
    return files


def check_output_dir(output_dir: str | Path) -> Path:
    """The output folder (-o) as a Path, after checking it can be a folder.

    Raises:
        DataError: it, or the nearest of its parents that exists, is not a folder.
    """
    out = Path(output_dir)
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                what = "it" if path == out else f"its parent {path}"
                raise DataError(f"{output_dir}: cannot be the output folder (-o): {what} is an "
                                "existing file")
            break
    return out


def kitti_score(detection: Detection) -> float:
    """The 16th KITTI field of a detection: ``1 - exp(-confidence)``, in [0, 1).

    DBSCAN's confidence is a sum of cell coverages and can exceed 1; KITTI tools expect a score
    in [0, 1]. The map is strictly increasing, so the ranking of detections (hence every AP
    computed from the dump) is the same as with the raw confidence.
    """
    return float(-math.expm1(-max(float(detection.confidence), 0.0)))


def kitti_line(label: str, detection: Detection) -> str:
    """One KITTI result line (16 fields): class, unknown 3D fields as in TLT's dump, the score."""
    return (f"{label} 0.00 0 0.00 {detection.xmin:.2f} {detection.ymin:.2f} {detection.xmax:.2f} "
            f"{detection.ymax:.2f} 0.00 0.00 0.00 0.00 0.00 0.00 0.00 {kitti_score(detection):.4f}")


def draw_detections(image, boxes: Sequence[tuple[Detection, tuple[int, int, int]]],
                    line_width: int):
    """Draw ``(detection, rgb)`` box outlines on an RGB copy of a PIL image.

    Boxes only, as TLT's overlay: the per-class colour tells the classes apart, and no text
    hides the pixels under it. The line grows inwards from the box edge.
    """
    from PIL import ImageDraw

    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    for det, colour in boxes:
        x1, y1, x2, y2 = (int(round(v)) for v in (det.xmin, det.ymin, det.xmax, det.ymax))
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=colour, width=line_width)
    return out


def to_source_pixels(path: Path, source_size: tuple[int, int], found: list[Detection],
                     network_size: tuple[int, int]) -> FrameDetections:
    """The frame's detections mapped from network pixels back to the image's own pixels."""
    import dataclasses

    sx = source_size[0] / network_size[0]
    sy = source_size[1] / network_size[1]
    mapped = [dataclasses.replace(d, xmin=d.xmin * sx, ymin=d.ymin * sy, xmax=d.xmax * sx,
                                  ymax=d.ymax * sy) for d in found]
    return FrameDetections(path=str(path), width=source_size[0], height=source_size[1],
                           detections=mapped)


def write_frame_outputs(frame: FrameDetections, image, labels: dict[str, str],
                        colours: dict[str, tuple[int, int, int]], labels_dir: Path | None,
                        annotated_dir: Path | None, line_width: int) -> None:
    """Write one frame's KITTI label file and/or annotated image (each atomically; None skips)."""
    path = Path(frame.path)
    if labels_dir is not None:
        text = "".join(kitti_line(labels[d.class_name], d) + "\n" for d in frame.detections)
        atomic_write_text(labels_dir / f"{path.stem}.txt", text)
    if annotated_dir is not None:
        drawn = draw_detections(image, [(d, colours[d.class_name]) for d in frame.detections],
                                line_width)
        fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
        # Full-resolution chroma (4:4:4) keeps thin coloured lines their colour in a JPEG.
        options = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
        with atomic_path(annotated_dir / path.name) as tmp:
            drawn.save(tmp, format=fmt, **options)
