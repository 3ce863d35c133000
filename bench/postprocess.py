"""Benchmark: DetectNet_v2 post-processing per frame, DBSCAN (TLT's) against NMS.

Frames are raw network outputs at 960x544 input (a 60x34 grid, 3 classes) made to look like a
trained model's: per class a few objects, each a soft elliptical blob of coverage whose cells
regress the object's box with a few pixels of noise, on a background of low sigmoid noise of
which a sprinkle of cells passes the 0.005 coverage threshold. Both modes use the settings of the
user guide's example spec (coverage_threshold 0.005, dbscan_eps 0.15 (car 0.13), min_samples
0.05, minimum height 20; NMS at IoU 0.5). The last line printed is the ratio NMS ms / DBSCAN ms.

    .venv/bin/python bench/postprocess.py [--frames 100] [--repeat 3] [--objects 6]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tlt.models.detectnet_v2.bbox_codec import BboxCodec
from tlt.models.detectnet_v2.postprocess import ClassSettings, PostProcessor

CLASSES = ["car", "cyclist", "pedestrian"]
WIDTH, HEIGHT, STRIDE = 960, 544, 16
# typical box sizes (width, height) in pixels per class
SIZES = {"car": ((40, 260), (30, 180)), "cyclist": ((20, 80), (40, 160)), "pedestrian": ((15, 60), (40, 200))}


def make_frame(rng: np.random.Generator, objects: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame's (cov [3, 34, 60], bbox [12, 34, 60])."""
    gh, gw = HEIGHT // STRIDE, WIDTH // STRIDE
    codec = BboxCodec()
    gx, gy = codec.grid_centers(gh, gw)
    # background: sigmoid of strongly negative logits, about 2% of cells above 0.005
    cov = 1 / (1 + np.exp(-rng.normal(-7.5, 1.2, size=(len(CLASSES), gh, gw)))).astype(np.float32)
    bbox = rng.normal(0, 1.0, size=(4 * len(CLASSES), gh, gw)).astype(np.float32)
    for c, name in enumerate(CLASSES):
        (wmin, wmax), (hmin, hmax) = SIZES[name]
        for _ in range(rng.integers(max(1, objects - 2), objects + 3)):
            w, h = rng.uniform(wmin, wmax), rng.uniform(hmin, hmax)
            x1, y1 = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
            cx, cy = x1 + w / 2, y1 + h / 2
            # coverage ellipse with semi-axes 0.4 of the half extent (the rasterizer's default), soft edge
            rx, ry = max(0.4 * w / 2, STRIDE), max(0.4 * h / 2, STRIDE)
            d2 = ((gx[None, :] - cx) / rx) ** 2 + ((gy[:, None] - cy) / ry) ** 2
            blob = rng.uniform(0.5, 0.95) * np.exp(-d2)
            cells = blob > 0.01
            cov[c][cells] = np.maximum(cov[c][cells], blob[cells])
            rows, cols = np.nonzero(cells)
            box = np.array([x1, y1, x1 + w, y1 + h], dtype=np.float32)
            targets = codec.encode(np.broadcast_to(box, (gh, gw, 4)))[rows, cols]
            noisy = targets + rng.normal(0, 3.0 / codec.scale, size=targets.shape)
            bbox[4 * c:4 * c + 4, rows, cols] = noisy.T
    return cov, bbox


def time_frames(processor: PostProcessor, frames, repeat: int) -> tuple[float, float]:
    """Best-of-``repeat`` milliseconds per frame, and detections per frame."""
    best, found = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        found = sum(len(processor(cov, bbox)) for cov, bbox in frames)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(frames), found / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="best of N passes over the frames")
    parser.add_argument("--objects", type=int, default=6, help="mean objects per class and frame")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    frames = [make_frame(rng, args.objects) for _ in range(args.frames)]
    proposals = np.mean([(cov > 0.005).sum() for cov, _ in frames])
    dbscan = PostProcessor(CLASSES, {c: ClassSettings(dbscan_eps=0.13 if c == "car" else 0.15) for c in CLASSES})
    nms = PostProcessor(CLASSES, {c: ClassSettings(algorithm="nms", nms_iou_threshold=0.5,
                                                   confidence_threshold=0.1) for c in CLASSES})
    time_frames(dbscan, frames[:5], 1)  # warm-up: imports, first-call allocations
    dbscan_ms, dbscan_found = time_frames(dbscan, frames, args.repeat)
    nms_ms, nms_found = time_frames(nms, frames, args.repeat)
    print(f"frames: {args.frames} at {WIDTH}x{HEIGHT} (grid {WIDTH // STRIDE}x{HEIGHT // STRIDE}, "
          f"{len(CLASSES)} classes); cells above threshold per frame: {proposals:.0f}; cores: {os.cpu_count()}")
    print(f"DBSCAN: {dbscan_ms:.2f} ms/frame ({dbscan_found:.1f} detections/frame, best of {args.repeat})")
    print(f"NMS:    {nms_ms:.2f} ms/frame ({nms_found:.1f} detections/frame, best of {args.repeat})")
    print(f"ratio nms/dbscan: {nms_ms / dbscan_ms:.2f}")


if __name__ == "__main__":
    main()
