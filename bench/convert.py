"""Benchmark: tlt-dataset-convert against the physical floor of the same work.

The floor is copying every image and label file once into a single output file (read + write the
same bytes, fsynced like the shards). Convert reads the same files, checks every image header and
end marker, parses every label and writes the TFRecord shards. Both run in this process on the same
page-cached data set of synthetic 960x544 JPEG frames (generated once and cached under the temp
folder). The last line printed is the ratio of the throughputs, convert / copy (target >= 0.5).

    .venv/bin/python bench/convert.py [--frames 2000] [--repeat 5] [--workers N]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from google.protobuf import text_format

from tlt.data.synthetic import make_detection_dataset
from tlt.proto.dataset_export_config_pb2 import DatasetExportConfig
from tlt.stages import convert


def _dataset(frames: int, width: int, height: int) -> Path:
    root = Path(tempfile.gettempdir()) / f"tlt-bench-convert-{frames}-{width}x{height}-jpg"
    if not (root / "kitti_seq_to_frames.json").exists():
        print(f"generating {frames} frames of {width}x{height} JPEG under {root} ...", flush=True)
        make_detection_dataset(root, num_frames=frames, width=width, height=height, seed=0,
                               image_format="jpg", overwrite=True)
    return root


def _files(root: Path) -> list[Path]:
    return sorted((root / "images").iterdir()) + sorted((root / "labels").iterdir())


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the convert workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _copy(files: list[Path], dest: Path) -> float:
    start = time.perf_counter()
    with open(dest, "wb") as out:
        for path in files:
            with open(path, "rb") as f:
                out.write(f.read())
        out.flush()
        os.fsync(out.fileno())
    return time.perf_counter() - start


def _convert(root: Path, out_dir: Path, workers: int | None) -> float:
    spec = text_format.Parse(
        f'kitti_config {{ root_directory_path: "{root}" image_extension: ".jpg" '
        f'partition_mode: "random" num_partitions: 2 num_shards: 10 val_split: 10 }}',
        DatasetExportConfig())
    start = time.perf_counter()
    convert.run(spec, out_dir, output_name="bench", num_workers=workers, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=544)
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs of each")
    parser.add_argument("--workers", type=int, default=None,
                        help="convert workers (default: one per core)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = _dataset(args.frames, args.width, args.height)
    files = _files(root)
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    work = Path(tempfile.mkdtemp(prefix="tlt-bench-convert-out-"))
    try:
        _copy(files, work / "warm")  # bring the data set into the page cache
        copy_s, convert_s, copy_cpu, convert_cpu = [], [], [], []
        for i in range(args.repeat):
            # Fresh destinations, removed outside the timed part: each run measures its own
            # writes, not the freeing of the previous run's output.
            cpu = _cpu_seconds()
            copy_s.append(_copy(files, work / f"copy-{i}.bin"))
            copy_cpu.append(_cpu_seconds() - cpu)
            cpu = _cpu_seconds()
            convert_s.append(_convert(root, work / f"convert-{i}", args.workers))
            convert_cpu.append(_cpu_seconds() - cpu)
            (work / f"copy-{i}.bin").unlink()
            shutil.rmtree(work / f"convert-{i}")
        copy_mbs, convert_mbs = size_mb / min(copy_s), size_mb / min(convert_s)
        print(f"data set: {args.frames} frames, {len(files)} files, {size_mb:.1f} MB; "
              f"cores: {os.cpu_count()}; convert workers: {args.workers or 'all cores'}; "
              f"load average: {os.getloadavg()[0]:.1f}")
        print(f"copy (floor): {copy_mbs:.1f} MB/s "
              f"(best {min(copy_s):.3f} s of {args.repeat})")
        print(f"convert:      {convert_mbs:.1f} MB/s "
              f"(best {min(convert_s):.3f} s of {args.repeat})")
        # CPU time is what the machine's other jobs cannot take away: context for the wall times.
        mid = args.repeat // 2
        print(f"cpu time (all processes, median): copy {sorted(copy_cpu)[mid]:.2f} s, "
              f"convert {sorted(convert_cpu)[mid]:.2f} s")
        print(f"ratio convert/copy: {convert_mbs / copy_mbs:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
