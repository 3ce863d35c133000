"""Deterministic sample data sets that a model can really learn from (same seed -> same bytes).

Detection (KITTI layout): road scenes on a textured background with cars (wide red rounded
bodies with wheels and windows), vans (tall light-grey boxes), pedestrians (tall narrow figures
with a head, green torso and legs) and cyclists (orange figures over a pair of wheels). Boxes
are exactly what is drawn; objects leaving the image are cut at the border and labelled truncated;
occlusion comes from the boxes drawn in front. A few ``DontCare`` regions hold clutter.

Classification (folder per class): small images of one shape each (circle, square, triangle ...),
with a class colour, jittered position/size/rotation and noise.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from tlt.errors import DataError
from tlt.io.atomic import atomic_dir

__all__ = ["DETECTION_CLASSES", "CLASSIFICATION_SHAPES", "DETECTION_LIMITS",
           "CLASSIFICATION_LIMITS", "MAX_PIXELS", "check_range", "make_detection_dataset",
           "make_classification_dataset"]

# Class -> (probability, 3D height/width/length in metres, box width/height aspect range).
DETECTION_CLASSES = {
    "Car": (0.45, (1.5, 1.7, 4.0), (2.0, 2.6)),
    "Van": (0.08, (2.1, 1.9, 4.8), (1.5, 1.8)),
    "Pedestrian": (0.25, (1.75, 0.6, 0.8), (0.34, 0.42)),
    "Cyclist": (0.22, (1.75, 0.6, 1.8), (0.8, 0.95)),
}
CLASSIFICATION_SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "stripes")
_FORMATS = {"png": ("png", "PNG"), "jpg": ("jpg", "JPEG"), "jpeg": ("jpg", "JPEG")}
_CAMERA_HEIGHT = 1.65  # metres above the road, as in KITTI

# Allowed ranges (inclusive) of the generators' arguments, and of their product in pixels: wide
# enough for any experiment on synthetic data, small enough that a typo (a width of 2e9, a
# million frames) is refused instead of filling the disk for hours. 2e9 pixels is about 4,300
# KITTI-sized frames, a few GB of PNG files.
DETECTION_LIMITS = {"num_frames": (1, 20000), "width": (64, 4096), "height": (64, 4096),
                    "num_sequences": (1, 1000)}
CLASSIFICATION_LIMITS = {"images_per_class": (0, 10000), "size": (8, 1024), "classes": (1, 100)}
MAX_PIXELS = 2_000_000_000


def check_range(name: str, value: int, limits: tuple[int, int]) -> None:
    """Raise `DataError` ``"<name> must be in [lo, hi], got <value>"`` when out of ``limits``."""
    lo, hi = limits
    if not lo <= value <= hi:
        raise DataError(f"{name} must be in [{lo}, {hi}], got {value}")


def _check_pixels(what: str, pixels: int) -> None:
    if pixels > MAX_PIXELS:
        raise DataError(f"{what} = {pixels:,} pixels, at most {MAX_PIXELS:,} (a few GB of "
                        "images); ask for fewer or smaller images")


def _prepare_out(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is an existing file, expected a folder (new or empty) for the "
                        "data set")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} exists and is not empty, expected a new folder "
                        "(pass overwrite=True / --overwrite to replace it)")
    return out


def _format(image_format: str) -> tuple[str, str]:
    try:
        return _FORMATS[image_format.lower().lstrip(".")]
    except KeyError:
        raise DataError(f"unknown image format {image_format!r}, expected png or jpg") from None


def _save(image: Image.Image, path: Path, pil_format: str) -> None:
    if pil_format == "JPEG":
        image.save(path, "JPEG", quality=90)
    else:
        image.save(path, "PNG", compress_level=1)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A 2x-sized texture (sky, horizon band, road with blotches) that frames crop from."""
    w2, h2 = width * 2, height * 2
    blotch = rng.integers(0, 256, (max(2, h2 // 24), max(2, w2 // 24), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(blotch).resize((w2, h2), Image.BILINEAR), dtype=np.int16)
    rows = np.linspace(0.0, 1.0, h2)[:, None, None]
    sky = np.array([150, 170, 200]) * (1 - rows) + np.array([90, 95, 100]) * rows
    base = np.where(rows < 0.45, sky, np.array([70, 72, 75]))
    grain = rng.integers(-12, 13, (h2, w2, 1), dtype=np.int16)
    return np.clip(base + (smooth - 128) * 0.25 + grain, 0, 255).astype(np.uint8)


def _draw_object(draw: ImageDraw.ImageDraw, cls: str, box: tuple[float, float, float, float],
                 rng: np.random.Generator) -> None:
    """Draw ``cls`` so that it fills exactly the (unclipped) ``box``."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    jitter = lambda c: tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in c)  # noqa
    if cls in ("Car", "Van"):
        body = jitter((190, 30, 35)) if cls == "Car" else jitter((215, 215, 210))
        # A car's cabin is a narrower box on top of the body; a van's is almost as wide.
        split = y1 + h * (0.45 if cls == "Car" else 0.2)
        inset = w * (0.2 if cls == "Car" else 0.03)
        draw.rounded_rectangle((x1 + inset, y1, x2 - inset, split + h * 0.1),
                               radius=max(1, h * 0.15), fill=body)
        draw.rectangle((x1 + inset + w * 0.05, y1 + h * 0.08, x2 - inset - w * 0.05, split),
                       fill=(120, 170, 210))
        draw.rounded_rectangle((x1, split, x2, y2 - h * 0.12), radius=max(1, h * 0.12), fill=body)
        r = h * 0.17
        for cx in (x1 + w * 0.2, x2 - w * 0.2):
            draw.ellipse((cx - r, y2 - 2 * r, cx + r, y2), fill=(20, 20, 20))
    elif cls == "Pedestrian":
        cx, head = (x1 + x2) / 2, h * 0.16
        draw.ellipse((cx - head / 2, y1, cx + head / 2, y1 + head), fill=jitter((225, 180, 140)))
        draw.rectangle((x1, y1 + head, x2, y1 + h * 0.55), fill=jitter((40, 170, 60)))
        leg = w * 0.3
        draw.rectangle((cx - leg - 1, y1 + h * 0.55, cx - 1, y2), fill=(30, 30, 70))
        draw.rectangle((cx + 1, y1 + h * 0.55, cx + leg + 1, y2), fill=(30, 30, 70))
    else:  # Cyclist: a figure over a wheel pair
        r = min(w * 0.24, h * 0.22)
        for cx in (x1 + r, x2 - r):
            draw.ellipse((cx - r, y2 - 2 * r, cx + r, y2), outline=(15, 15, 15),
                         width=max(1, int(r * 0.3)))
        draw.line((x1 + r, y2 - r, x2 - r, y2 - r), fill=(60, 60, 60), width=max(1, int(r * 0.2)))
        cx, head = (x1 + x2) / 2, h * 0.15
        draw.ellipse((cx - head / 2, y1, cx + head / 2, y1 + head), fill=jitter((225, 180, 140)))
        draw.rectangle((cx - w * 0.15, y1 + head, cx + w * 0.15, y2 - r),
                       fill=jitter((245, 140, 20)))


def _place_objects(rng: np.random.Generator, width: int, height: int) -> list[dict]:
    names = list(DETECTION_CLASSES)
    probs = np.array([DETECTION_CLASSES[n][0] for n in names])
    focal, horizon = width * 0.75, height * 0.45
    objects = []
    for _ in range(int(rng.integers(2, 7))):
        cls = names[int(rng.choice(len(names), p=probs / probs.sum()))]
        aspect = DETECTION_CLASSES[cls][2]
        dims = tuple(d * float(rng.uniform(0.92, 1.08)) for d in DETECTION_CLASSES[cls][1])
        # Depth range keeps boxes between ~24 px and ~60 % of the image height.
        z_near = max(3.0, focal * dims[0] / (0.6 * height))
        z = float(rng.uniform(z_near, max(z_near + 1.0, focal * dims[0] / 24.0)))
        bh = focal * dims[0] / z
        bw = bh * float(rng.uniform(*aspect))
        y2 = horizon + focal * _CAMERA_HEIGHT / z
        xc = float(rng.uniform(-0.08 * width, 1.08 * width))
        box = (xc - bw / 2, y2 - bh, xc + bw / 2, y2)
        clipped = (max(0.0, box[0]), max(0.0, box[1]), min(width - 1.0, box[2]),
                   min(height - 1.0, box[3]))
        vis_w, vis_h = clipped[2] - clipped[0], clipped[3] - clipped[1]
        if vis_w < 4 or vis_h < 12 or vis_w * vis_h < 0.35 * bw * bh:
            continue  # mostly outside the image: nothing a detector could learn from
        ry = float(rng.uniform(-math.pi, math.pi))
        x3d = (xc - width / 2) * z / focal
        objects.append({
            "cls": cls, "box": box, "clipped": clipped, "dims": dims,
            "loc": (x3d, _CAMERA_HEIGHT, z),
            "ry": ry, "alpha": (ry - math.atan2(x3d, z) + math.pi) % (2 * math.pi) - math.pi,
            "truncation": max(0.0, round(1.0 - vis_w * vis_h / (bw * bh), 2))})
    objects.sort(key=lambda o: o["box"][3])  # far (small ymax) first, near objects on top
    return objects


def _occlusion(objects: list[dict], width: int, height: int) -> None:
    """Occlusion level of each object from the share of its box covered by objects in front."""
    scale = 4
    cover = np.zeros((height // scale + 1, width // scale + 1), dtype=bool)
    for obj in reversed(objects):  # nearest first
        x1, y1, x2, y2 = (int(v / scale) for v in obj["clipped"])
        area = cover[y1:y2 + 1, x1:x2 + 1]
        frac = float(area.mean()) if area.size else 0.0
        obj["occlusion"] = 0 if frac < 0.1 else 1 if frac < 0.5 else 2
        obj["hidden"] = frac > 0.8
        area[:] = True


def _label_line(cls: str, trunc: float, occ: int, alpha: float, box: Sequence[float],
                dims: Sequence[float], loc: Sequence[float], ry: float) -> str:
    values = [trunc, occ, alpha, *box, *dims, *loc, ry]
    text = " ".join("%d" % v if isinstance(v, int) else "%.2f" % v for v in values)
    return f"{cls} {text}"


def _detection_frame(rng: np.random.Generator, texture: np.ndarray, offset: tuple[int, int],
                     width: int, height: int) -> tuple[Image.Image, list[str], list[str]]:
    ox, oy = offset
    crop = texture[oy:oy + height, ox:ox + width]
    image = Image.fromarray(crop)
    draw = ImageDraw.Draw(image)
    lines, classes = [], []
    for _ in range(int(rng.integers(0, 3))):  # DontCare clutter, far away near the horizon
        cx, cy = rng.uniform(0.1 * width, 0.9 * width), rng.uniform(0.38 * height, 0.5 * height)
        w, h = rng.uniform(15, 40), rng.uniform(8, 18)
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        for _ in range(5):
            bx, by = rng.uniform(box[0], box[2] - 3), rng.uniform(box[1], box[3] - 3)
            colour = tuple(int(v) for v in rng.integers(60, 200, 3))
            draw.rectangle((bx, by, bx + 3, by + 3), fill=colour)
        lines.append(_label_line("DontCare", -1, -1, -10, box, (-1, -1, -1),
                                 (-1000, -1000, -1000), -10))
        classes.append("DontCare")
    objects = _place_objects(rng, width, height)
    _occlusion(objects, width, height)
    for obj in objects:
        if obj["hidden"]:
            continue
        _draw_object(draw, obj["cls"], obj["box"], rng)
        lines.append(_label_line(obj["cls"], obj["truncation"], obj["occlusion"], obj["alpha"],
                                 obj["clipped"], obj["dims"], obj["loc"], obj["ry"]))
        classes.append(obj["cls"])
    return image, lines, classes


def make_detection_dataset(out_dir: str | os.PathLike, *, num_frames: int = 60, width: int = 480,
                           height: int = 272, seed: int = 0, image_format: str = "png",
                           num_sequences: int = 6, overwrite: bool = False) -> dict:
    """Write a KITTI-layout detection data set: images/, labels/ and kitti_seq_to_frames.json.

    Args:
        out_dir: the data set root (created; must be new or empty unless ``overwrite``).
        num_frames: number of frames (ids ``000000`` ...).
        width: image width in pixels.
        height: image height in pixels (each of these in `DETECTION_LIMITS`, their product with
            ``num_frames`` at most `MAX_PIXELS`).
        seed: random seed; the same seed gives byte-identical files.
        image_format: ``png`` or ``jpg``.
        num_sequences: frames are grouped into this many contiguous "video" sequences, each with
            its own background, listed in the sequence map.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        ``{"root", "image_dir", "label_dir", "sequence_file", "image_extension", "num_frames",
        "class_counts"}`` with the class names as written (mixed case).

    Raises:
        DataError: an argument out of its range, ``out_dir`` an existing file or (without
            ``overwrite``) a non-empty folder; nothing is written then.
    """
    for name, value in (("num_frames", num_frames), ("width", width), ("height", height),
                        ("num_sequences", num_sequences)):
        check_range(name, value, DETECTION_LIMITS[name])
    _check_pixels("num_frames x width x height", num_frames * width * height)
    ext, pil_format = _format(image_format)
    out = _prepare_out(out_dir, overwrite)
    rng = np.random.default_rng(seed)
    texture = _background(rng, width, height)
    num_sequences = min(num_sequences, num_frames)
    cuts = np.sort(rng.choice(np.arange(1, num_frames), num_sequences - 1, replace=False)) \
        if num_sequences > 1 else np.array([], dtype=int)
    bounds = [0, *cuts.tolist(), num_frames]
    counts: Counter = Counter()
    seq_map: dict[str, list[str]] = {}
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        for s in range(num_sequences):
            name = f"synthetic_drive_{s:04d}_sync"
            offset = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            seq_map[name] = []
            for index in range(bounds[s], bounds[s + 1]):
                frame_rng = np.random.default_rng([seed, index])
                shifted = (min(width, offset[0] + index - bounds[s]), offset[1])
                image, lines, classes = _detection_frame(frame_rng, texture, shifted, width, height)
                fid = f"{index:06d}"
                _save(image, tmp / "images" / f"{fid}.{ext}", pil_format)
                (tmp / "labels" / f"{fid}.txt").write_text("".join(l + "\n" for l in lines))
                counts.update(classes)
                seq_map[name].append(fid)
        (tmp / "kitti_seq_to_frames.json").write_text(json.dumps(seq_map, indent=2) + "\n")
    return {"root": str(out), "image_dir": "images", "label_dir": "labels",
            "sequence_file": "kitti_seq_to_frames.json", "image_extension": f".{ext}",
            "num_frames": num_frames, "class_counts": dict(sorted(counts.items()))}


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
                angle: float, color: tuple[int, int, int]) -> None:
    def polygon(n: int, start: float) -> list[tuple[float, float]]:
        return [(cx + r * math.cos(start + 2 * math.pi * k / n),
                 cy + r * math.sin(start + 2 * math.pi * k / n)) for k in range(n)]

    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=color, width=max(2, int(r / 3)))
    elif shape == "square":
        draw.polygon(polygon(4, angle + math.pi / 4), fill=color)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.6, cy), (cx, cy + r), (cx - r * 0.6, cy)],
                     fill=color)
    elif shape == "triangle":
        draw.polygon(polygon(3, angle - math.pi / 2), fill=color)
    elif shape == "cross":
        t = max(2, int(r / 2.5))
        draw.line((cx - r, cy, cx + r, cy), fill=color, width=t)
        draw.line((cx, cy - r, cx, cy + r), fill=color, width=t)
    else:  # stripes
        for k in range(-2, 3):
            draw.line((cx - r, cy + k * r / 2.5 - r / 5, cx + r, cy + k * r / 2.5 + r / 5),
                      fill=color, width=max(1, int(r / 6)))


def make_classification_dataset(out_dir: str | os.PathLike, *,
                                classes: Sequence[str] = ("circle", "square", "triangle"),
                                images_per_class: Sequence[int] = (30, 10, 10), size: int = 32,
                                seed: int = 0, image_format: str = "png",
                                overwrite: bool = False) -> dict:
    """Write ``train/``, ``val/``, ``test/`` folders with one sub-folder of images per class.

    A class named after a shape in `CLASSIFICATION_SHAPES` is drawn as that shape; other names
    take the shapes in order. Each class also has its own hue, so colour and shape both separate
    the classes; position, size, rotation, brightness and pixel noise vary per image.

    Args:
        out_dir: the data set root (created; must be new or empty unless ``overwrite``).
        classes: class names (folder names).
        images_per_class: images per class in train, val and test.
        size: image side in pixels.
        seed: random seed; the same seed gives byte-identical files.
        image_format: ``png`` or ``jpg``.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        ``{"root", "classes", "splits": {"train": n, "val": n, "test": n}}`` (images per split).

    Raises:
        DataError: an argument out of its range (`CLASSIFICATION_LIMITS`, `MAX_PIXELS`),
            ``out_dir`` an existing file or (without ``overwrite``) a non-empty folder.
    """
    if len(images_per_class) != 3 or len(set(classes)) != len(classes):
        raise DataError("make_classification_dataset expects distinct class names and "
                        "images_per_class=(train, val, test)")
    check_range("classes", len(classes), CLASSIFICATION_LIMITS["classes"])
    check_range("size", size, CLASSIFICATION_LIMITS["size"])
    for split, count in zip(("train", "val", "test"), images_per_class):
        check_range(f"{split} images per class", count, CLASSIFICATION_LIMITS["images_per_class"])
    _check_pixels("images x size x size", len(classes) * sum(images_per_class) * size * size)
    ext, pil_format = _format(image_format)
    out = _prepare_out(out_dir, overwrite)
    spare = [s for s in CLASSIFICATION_SHAPES if s not in classes]
    shapes = {c: c if c in CLASSIFICATION_SHAPES else spare[i % len(spare)]
              for i, c in enumerate(classes)}
    splits = dict(zip(("train", "val", "test"), images_per_class))
    with atomic_dir(out) as tmp:
        for s_index, (split, count) in enumerate(splits.items()):
            for c_index, cls in enumerate(classes):
                folder = tmp / split / cls
                folder.mkdir(parents=True)
                hue = np.array([math.cos(2 * math.pi * c_index / len(classes) + k * 2.1)
                                for k in range(3)])
                for i in range(count):
                    rng = np.random.default_rng([seed, s_index, c_index, i])
                    bg = rng.integers(0, 90, 3)
                    pixels = np.clip(bg + rng.normal(0, 18, (size, size, 3)), 0, 255)
                    image = Image.fromarray(pixels.astype(np.uint8))
                    color = tuple(int(v) for v in np.clip(150 + 90 * hue + rng.normal(0, 20, 3),
                                                          0, 255))
                    r = size * float(rng.uniform(0.22, 0.38))
                    cx, cy = (float(rng.uniform(r, size - r)) for _ in range(2))
                    _draw_shape(ImageDraw.Draw(image), shapes[cls], cx, cy, r,
                                float(rng.uniform(0, 2 * math.pi)), color)
                    noisy = (np.asarray(image, dtype=np.int16)
                             + rng.integers(-10, 11, (size, size, 3)))
                    _save(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)),
                          folder / f"{cls}_{i:04d}.{ext}", pil_format)
    return {"root": str(out), "classes": list(classes), "splits": splits}
