"""DeepStream ``nvinfer`` configuration and labels file for an export (guide chapter 10).

nvinfer computes ``y = net-scale-factor * (x - offsets)`` per pixel, in ``model-color-format``
channel order: the model's preprocessing maps onto it directly ((x - 127.5) / 127.5 in RGB for
every TLT model here). DetectNet_v2 post-processing comes from the training spec's
``postprocessing_config``: its clustering becomes ``cluster-mode`` and one ``[class-attrs-N]``
group per class (coverage threshold, DBSCAN eps / minimum summed coverage, NMS IoU, minimum
height, confidence threshold).

DeepStream's own ``.etlt`` decoder does not read this project's encrypted container, so a config
for an ``.etlt`` names it and the key field (left for the user: keys never go into config files)
for the record, and points ``model-engine-file`` at the engine tlt-converter builds from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlt.io.atomic import atomic_write_text

__all__ = ["NETWORK_MODES", "class_settings", "deepstream_config", "labels_text",
           "write_deepstream_config"]

NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}
_CLUSTER_MODES = {"dbscan": 1, "nms": 2}


def class_settings(metadata: dict) -> dict[str, Any]:
    """Post-processing settings per class of a detection export (`ClassSettings`).

    From the training spec stored in the metadata; TLT's defaults when it has none.
    """
    from tlt.models.detectnet_v2.postprocess import ClassSettings, build_postprocessor

    classes = list(metadata["classes"])
    if not metadata.get("spec"):
        return {name: ClassSettings() for name in classes}
    from tlt import spec as spec_loader

    experiment = spec_loader.loads(metadata["spec"], "detection", path="<model spec>")
    return dict(build_postprocessor(experiment, classes).settings)


def labels_text(metadata: dict) -> str:
    """nvinfer's labels file: one class per line (detector), ``;``-separated on one line
    (classifier)."""
    classes = list(metadata["classes"])
    if metadata["task"] == "classification":
        return ";".join(classes) + "\n"
    return "".join(f"{name}\n" for name in classes)


def _model_lines(model_name: str, encrypted: bool, engine_name: str) -> list[str]:
    if not encrypted:
        return [f"onnx-file={model_name}", f"model-engine-file={engine_name}"]
    return [f"tlt-encoded-model={model_name}",
            "# tlt-export never writes the key into a file: set it, or use the engine below,",
            "# built by tlt-converter (DeepStream cannot decrypt this project's .etlt itself).",
            "tlt-model-key=<TLT_KEY>",
            f"model-engine-file={engine_name}",
            "uff-input-blob-name=input_1"]


def _class_attrs(settings: dict) -> tuple[int, list[str]]:
    algorithms = {s.algorithm for s in settings.values()}
    mode = _CLUSTER_MODES["nms"] if algorithms == {"nms"} else _CLUSTER_MODES["dbscan"]
    lines = []
    for index, (name, s) in enumerate(settings.items()):
        lines += ["", f"# {name}", f"[class-attrs-{index}]",
                  f"pre-cluster-threshold={s.coverage_threshold:g}",
                  f"post-cluster-threshold={s.confidence_threshold:g}",
                  f"detected-min-h={int(round(s.minimum_height))}"]
        if mode == _CLUSTER_MODES["dbscan"]:
            lines += [f"eps={s.dbscan_eps:g}", "minBoxes=1",
                      f"dbscan-min-score={s.dbscan_min_samples:g}"]
        else:
            lines += [f"nms-iou-threshold={s.nms_iou_threshold:g}"]
    if len(algorithms) > 1:
        lines.insert(0, "# the spec mixes DBSCAN and NMS per class; nvinfer clusters all classes "
                        "one way: DBSCAN")
    return mode, lines


def deepstream_config(metadata: dict, *, model_name: str, encrypted: bool, engine_name: str,
                      labels_name: str, precision: str, max_batch_size: int,
                      cal_cache_name: str | None = None) -> str:
    """The nvinfer config text of an export.

    Args:
        metadata: the export's metadata (task, classes, input_dims, preprocessing, output_names).
        model_name: the export's file name, relative to the config.
        encrypted: the export is an ``.etlt``.
        engine_name: the engine file DeepStream should load or create.
        labels_name: the labels file, relative to the config.
        precision: fp32, fp16 or int8 (``network-mode``).
        max_batch_size: ``batch-size``.
        cal_cache_name: the INT8 calibration cache, relative to the config.
    """
    c, h, w = (int(d) for d in metadata["input_dims"])
    pre = metadata.get("preprocessing") or {}
    scale, offset = float(pre.get("scale", 1 / 127.5)), float(pre.get("offset", 127.5))
    detector = metadata["task"] == "detection"
    lines = ["# nvinfer configuration written by tlt-export", "[property]", "gpu-id=0",
             f"net-scale-factor={scale!r}", f"offsets={';'.join([f'{offset:g}'] * c)}",
             f"model-color-format={0 if c == 3 else 2}",
             *_model_lines(model_name, encrypted, engine_name),
             f"labelfile-path={labels_name}", f"infer-dims={c};{h};{w}", "network-input-order=0",
             f"batch-size={int(max_batch_size)}", f"network-mode={NETWORK_MODES[precision]}"]
    if precision == "int8" and cal_cache_name:
        lines.append(f"int8-calib-file={cal_cache_name}")
    lines += [f"output-blob-names={';'.join(metadata['output_names'])}",
              f"network-type={0 if detector else 1}", "process-mode=1", "interval=0",
              "gie-unique-id=1"]
    if not detector:
        return "\n".join(lines + ["classifier-threshold=0.2"]) + "\n"
    mode, attrs = _class_attrs(class_settings(metadata))
    lines += [f"num-detected-classes={len(metadata['classes'])}", f"cluster-mode={mode}"]
    return "\n".join(lines + attrs) + "\n"


def write_deepstream_config(folder: str | Path, stem: str, metadata: dict, **fields) -> tuple[Path, Path]:
    """Write ``<stem>_nvinfer_config.txt`` and ``labels.txt`` into ``folder``.

    Args:
        folder: where the export lives.
        stem: the export's name without extension.
        metadata: the export's metadata.
        **fields: `deepstream_config`'s keyword arguments except ``labels_name``.

    Returns:
        ``(config path, labels path)``.
    """
    folder = Path(folder)
    labels = folder / "labels.txt"
    config = folder / f"{stem}_nvinfer_config.txt"
    atomic_write_text(labels, labels_text(metadata))
    atomic_write_text(config, deepstream_config(metadata, labels_name=labels.name, **fields))
    return config, labels
