"""Benchmark: DetectNet_v2 training fed by the real input pipeline vs. by one cached batch.

Both runs train the same DetectNet_v2 (ResNet-10, 3x272x480 by default, TLT's loss and Adam) with
Keras ``fit`` in this process. The pipeline run reads TFRecord shards from disk through
`tlt.data.detection_input.build_detection_input` (decode, crop/resize, spatial and colour
augmentation, rasterization); the cached run steps on ``dataset.take(1).cache().repeat()``, the
same model with no input work at all. Runs alternate (cached, pipeline, cached, ...) and the
best of each is kept, so load from other processes hits both alike. The last line printed is the
ratio of training speeds, pipeline / cached (target >= 0.95: the trainer never waits for input).

    .venv/bin/python bench/detection_input.py [--frames 240] [--batch 8] [--steps 20]
        [--repeat 3] [--format png]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLASSES = ("car", "pedestrian", "cyclist")


def _records(frames: int, width: int, height: int, image_format: str) -> Path:
    from tlt import spec as spec_lib
    from tlt.data.synthetic import make_detection_dataset
    from tlt.stages import convert

    base = Path(tempfile.gettempdir()) / f"tlt-bench-detinput-{frames}-{width}x{height}-{image_format}"
    out = base / "tfrecords"
    if not (out / "metadata.json").exists():
        print(f"generating {frames} frames of {width}x{height} {image_format} under {base} ...",
              flush=True)
        make_detection_dataset(base / "kitti", num_frames=frames, width=width, height=height,
                               seed=0, image_format=image_format, overwrite=True)
        spec = spec_lib.loads(
            f'kitti_config {{ root_directory_path: "{base / "kitti"}" image_extension: '
            f'".{"jpg" if image_format == "jpg" else "png"}" partition_mode: "random" '
            'num_partitions: 2 num_shards: 10 val_split: 10 }', "dataset_export")
        convert.run(spec, out, output_name="bench", progress=False)
    return out


def _experiment(records: Path, width: int, height: int, batch: int):
    from tlt import spec as spec_lib

    classes = "".join(
        f'target_class_config {{ key: "{c}" value {{ cov_center_x: 0.5 cov_center_y: 0.5 '
        f'cov_radius_x: {0.4 if c == "car" else 1.0} cov_radius_y: {0.4 if c == "car" else 1.0} '
        'bbox_min_radius: 1.0 } }\n' for c in CLASSES)
    costs = "".join(
        f'target_classes {{ name: "{c}" class_weight: 1.0 coverage_foreground_weight: 0.05 '
        'objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 } '
        'objectives { name: "bbox" initial_weight: 10.0 weight_target: 10.0 } }\n'
        for c in CLASSES)
    # The guide's augmentation settings (section "Augmentation module").
    return spec_lib.loads(f"""
random_seed: 42
model_config {{ template: "resnet" num_layers: 10 use_batch_norm: true all_projections: true }}
bbox_rasterizer_config {{ {classes} deadzone_radius: 0.67 }}
cost_function_config {{ {costs} enable_autoweighting: true }}
training_config {{ batch_size_per_gpu: {batch} }}
augmentation_config {{
  preprocessing {{ output_image_width: {width} output_image_height: {height}
                  min_bbox_width: 1.0 min_bbox_height: 1.0 }}
  spatial_augmentation {{ hflip_probability: 0.5 vflip_probability: 0.0 zoom_min: 1.0
                         zoom_max: 1.0 translate_max_x: 8.0 translate_max_y: 8.0 }}
  color_augmentation {{ color_shift_stddev: 0.0 hue_rotation_max: 25.0
                       saturation_shift_max: 0.2 contrast_scale_max: 0.1 contrast_center: 0.5 }}
}}
dataset_config {{
  data_sources {{ tfrecords_path: "{records}/bench-fold-*" image_directory_path: "unused" }}
  image_extension: "png"
  target_class_mapping {{ key: "car" value: "car" }}
  target_class_mapping {{ key: "pedestrian" value: "pedestrian" }}
  target_class_mapping {{ key: "cyclist" value: "cyclist" }}
  validation_fold: 0
}}
""", "detection")


def _model(experiment, width: int, height: int):
    import keras

    from tlt.models.detectnet_v2.loss import build_detectnet_loss
    from tlt.models.detectnet_v2.model import build_detectnet_v2

    model = build_detectnet_v2(experiment.model_config, CLASSES, input_height=height,
                               input_width=width)
    loss = build_detectnet_loss(experiment.cost_function_config, CLASSES)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss.losses())
    return model


def _steps_per_second(model, dataset, steps: int) -> float:
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=272)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed run")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs of each")
    parser.add_argument("--format", choices=("png", "jpg"), default="png",
                        help="image format inside the records (KITTI is png)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from tlt.data.detection_input import build_detection_input

    records = _records(args.frames, args.width, args.height, args.format)
    experiment = _experiment(records, args.width, args.height, args.batch)
    pipeline = build_detection_input(experiment, training=True, batch_size=args.batch, seed=42,
                                     drop_remainder=True)
    cached = pipeline.take(1).cache().repeat()
    model = _model(experiment, args.width, args.height)
    # Warm-up: trace the train step and fill the pipeline's buffers and the cache.
    _steps_per_second(model, cached, 3)
    _steps_per_second(model, pipeline, 3)
    cached_runs, pipeline_runs = [], []
    for _ in range(args.repeat):
        cached_runs.append(_steps_per_second(model, cached, args.steps))
        pipeline_runs.append(_steps_per_second(model, pipeline, args.steps))
    best_cached, best_pipeline = max(cached_runs), max(pipeline_runs)
    print(f"model: DetectNet_v2 ResNet-10, input 3x{args.height}x{args.width}, batch {args.batch}, "
          f"{len(CLASSES)} classes; data: {args.frames} {args.format} frames; "
          f"cores: {os.cpu_count()}")
    print("cached batch:   " + ", ".join(f"{v:.3f}" for v in cached_runs)
          + f" steps/s (best {best_cached:.3f})")
    print("input pipeline: " + ", ".join(f"{v:.3f}" for v in pipeline_runs)
          + f" steps/s (best {best_pipeline:.3f})")
    print(f"ratio pipeline/cached: {best_pipeline / best_cached:.3f}")


if __name__ == "__main__":
    main()
