"""``tlt-infer detection``: run a DetectNet_v2 model on images, dump KITTI labels and/or overlays.

Every image, whatever its size, is resized to the model input (``input_dims`` in the model's
metadata) the way evaluation resizes validation frames (bilinear, half-pixel centres), scaled
with the stored ``preprocessing``, run through the network, post-processed, and its boxes mapped
back to the original pixels. Outputs (guide 7.2)::

    OUT_DIR/labels/<image stem>.txt          -k: one KITTI line per box, score as 16th field
    OUT_DIR/images_annotated/<image name>    -bo: the original image with the boxes drawn
    OUT_DIR/metadata.json                    what ran, on what, and which images were skipped

Post-processing comes from the cluster-params JSON (``-cp``, guide "Specification file for
inference") or else from the training spec stored in the model (its ``postprocessing_config``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from tlt.data.images import probe_image
from tlt.errors import DataError, ModelFileError, SpecError
from tlt.inference.detection_outputs import (ANNOTATED_DIR, DEFAULT_PALETTE, LABELS_DIR, FrameDetections,
                                             check_output_dir, list_input_images, to_source_pixels,
                                             write_frame_outputs)

__all__ = ["BLOB_OPS", "DetectionInferenceResult", "infer_detection", "output_layer_name"]

_log = logging.getLogger(__name__)

# TLT names the outputs by their TensorFlow 1 blobs, "<layer>/<op>" (the guide, DeepStream configs):
# the coverage head ends in a Sigmoid, the bbox head in a BiasAdd. Either role accepts its own op.
BLOB_OPS = {"output_cov": "Sigmoid", "output_bbox": "BiasAdd"}


@dataclass
class DetectionInferenceResult:
    """What `infer_detection` did: per-image detections, skipped images and the output folders."""

    frames: list[FrameDetections]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    labels_dir: str | None = None
    annotated_dir: str | None = None


def output_layer_name(name: str, role: str, layer_names: Sequence[str]) -> str:
    """The layer an output flag names: a layer name as is, or TLT's blob name ``<layer>/<op>``.

    Args:
        name: the flag's value, e.g. ``output_cov`` or ``output_cov/Sigmoid``.
        role: "output_cov" or "output_bbox" (which op a blob name of that output ends in).
        layer_names: the model's layers.

    Returns:
        ``name`` when the model has such a layer; else the layer part of a blob name whose op is
        the role's (``Sigmoid`` for coverage, ``BiasAdd`` for bbox); else ``name`` unchanged
        (the caller reports the missing layer).
    """
    layer, _, op = name.partition("/")
    if name in layer_names or not op or layer not in layer_names:
        return name
    if op != BLOB_OPS[role]:
        raise DataError(f"--{role} {name!r}: the {role} blob of a DetectNet_v2 is "
                        f"<layer>/{BLOB_OPS[role]} (e.g. {role}/{BLOB_OPS[role]}), not /{op}")
    return layer


def _load_deployed(model_uri: str, key: str | None, output_cov: str, output_bbox: str,
                   framework: str | None):
    """`_load_model` of an export or engine: ONNX Runtime / TensorRT, no TensorFlow."""
    from tlt.inference.deployed import load_deployed

    model = load_deployed(model_uri, framework=framework, key=key)
    model.check_task("detection")
    names = [model.output_name(output_cov, BLOB_OPS["output_cov"]),
             model.output_name(output_bbox, BLOB_OPS["output_bbox"])]
    _log.info("running %s (%s) without TensorFlow", model_uri, model.description)
    metadata = dict(model.metadata, input_dims=list(model.input_dims))
    return model.predictor(names), [False, False], metadata


def _load_model(model_uri: str, key: str | None, output_cov: str, output_bbox: str,
                framework: str | None = None):
    """``(network returning [cov, bbox], channels_last flags, metadata)``."""
    from tlt.inference.deployed import is_deployed

    if is_deployed(model_uri, framework):
        return _load_deployed(model_uri, key, output_cov, output_bbox, framework)
    import keras

    from tlt.io.modelfile import load_keras_model

    model, metadata = load_keras_model(model_uri, key=key, compile=False)
    if metadata.get("task") != "detection":
        raise ModelFileError(f"{model_uri}: is a {metadata.get('task') or 'unknown'} model, not a "
                             "DetectNet_v2 detection model")
    classes = list(metadata.get("classes") or [])
    dims = list(metadata.get("input_dims") or [])
    if not classes or len(dims) != 3:
        raise ModelFileError(f"{model_uri}: metadata lacks the classes or input_dims [C, H, W] of "
                             "a detection model")
    layers, channels_last = [], []
    for role, given, channels in (("output_cov", output_cov, len(classes)),
                                  ("output_bbox", output_bbox, 4 * len(classes))):
        tensor, last = _output(model, model_uri, output_layer_name(given, role, _layer_names(model)),
                               channels, classes)
        layers.append(tensor)
        channels_last.append(last)
    net = model if [t.name for t in layers] == [t.name for t in model.outputs] else \
        keras.Model(model.inputs, layers)
    return net, channels_last, metadata


def _layer_names(model) -> list[str]:
    return [layer.name for layer in model.layers]


def _output(model, model_uri: str, name: str, channels: int, classes: list[str]):
    """``(output tensor of layer name, whether its channels are last)``."""
    try:
        layer = model.get_layer(name)
    except ValueError:
        outputs = ", ".join(t._keras_history.operation.name for t in model.outputs)
        raise DataError(f"{model_uri}: has no layer {name!r} (its outputs are {outputs}; TLT's "
                        "blob names output_cov/Sigmoid and output_bbox/BiasAdd work too)") from None
    shape = tuple(layer.output.shape)
    first = len(shape) == 4 and shape[1] == channels
    last = len(shape) == 4 and shape[3] == channels
    if getattr(layer, "data_format", None) == "channels_last" and last:
        first = False
    if not (first or last):
        raise DataError(f"{model_uri}: layer {name!r} has output shape {shape}, expected "
                        f"{channels} channels for classes {', '.join(classes)}")
    return layer.output, not first


def _check_targets(params, classes: list[str], path: str) -> None:
    targets = list(params.target_classes)
    unknown = [c for c in targets if c not in classes]
    if unknown:
        raise SpecError(f"target_classes names {', '.join(repr(c) for c in unknown)}, which the model "
                        f"does not have (model classes: {', '.join(classes)})", path=path,
                        field="target_classes")
    if targets != classes:
        raise SpecError(f"target_classes must be the model's classes in training order "
                        f"({', '.join(classes)}), got {', '.join(targets)}", path=path,
                        field="target_classes")
    for name, label in params.output_map.items():
        if not label or len(label.split()) != 1:
            raise SpecError(f"output_map[{name!r}] must be one word (a KITTI class name), got "
                            f"{label!r}", path=path, field="output_map")


def _colours(params, classes: list[str], path: str | None) -> dict[str, tuple[int, int, int]]:
    from PIL import ImageColor

    colours = {}
    given = dict(params.color) if params is not None else {}
    for i, name in enumerate(classes):
        value = given.get(name, given.get("default"))
        if value is None:
            colours[name] = DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)]
            continue
        try:
            colours[name] = ImageColor.getrgb(value)[:3]
        except ValueError:
            raise SpecError(f"color[{name!r}] is {value!r}, expected a colour name or #rrggbb",
                            path=path, field="color") from None
    return colours


def _postprocessing(metadata: dict, cluster_params: str | None, size: tuple[int, int]):
    """``(PostProcessor, class -> output label, class -> colour)``."""
    from tlt import spec as spec_loader
    from tlt.models.detectnet_v2.bbox_codec import BboxCodec
    from tlt.models.detectnet_v2.postprocess import PostProcessor, build_postprocessor

    classes = list(metadata["classes"])
    codec = BboxCodec(stride=int(metadata.get("stride", 16)),
                      scale=float(metadata.get("bbox_scale", 35.0)),
                      offset=float(metadata.get("bbox_offset", 0.5)))
    params = None
    if cluster_params:
        params = spec_loader.load_cluster_params(cluster_params)
        _check_targets(params, classes, str(cluster_params))
        if (params.image_width, params.image_height) != size:
            _log.info("%s: image_width x image_height %dx%d differ from the model input %dx%d; "
                      "images are resized to the model input", cluster_params, params.image_width,
                      params.image_height, *size)
        post = build_postprocessor(params, classes, codec=codec, image_size=size)
    elif metadata.get("spec"):
        # Training already warned about its spec's ignored fields; inference uses only post-processing.
        experiment = spec_loader.loads(metadata["spec"], "detection", path="<model spec>", warn=False)
        post = build_postprocessor(experiment, classes, codec=codec, image_size=size)
    else:
        _log.warning("the model stores no training spec and no -cp file was given: default "
                     "post-processing settings are used")
        post = PostProcessor(classes, None, codec, size)
    labels = {name: post.settings[name].output_name or name for name in classes}
    # The post-processor would rename; labels are applied here so colours stay keyed by class.
    for name in classes:
        post.settings[name] = _without_output_name(post.settings[name])
    return post, labels, _colours(params, classes, cluster_params)


def _without_output_name(settings):
    import dataclasses

    return dataclasses.replace(settings, output_name=None)


def _read_image(path: Path, channels: int):
    """``(PIL image as read, network array HWC float32 at source size)``."""
    from PIL import Image

    probe_image(path)
    try:
        with Image.open(path) as img:
            img.load()
            source = img.convert("RGB")
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable image ({err.__class__.__name__}: {err})") from None
    pixels = source.convert("L") if channels == 1 else source
    array = np.asarray(pixels, dtype=np.float32)
    return source, array.reshape(array.shape[0], array.shape[1], channels)


def _network_batch(arrays: list[np.ndarray], size: tuple[int, int], preprocessing: dict) -> np.ndarray:
    """Resize (numpy, equal to ``tf.image.resize`` bilinear) and scale to ``[N, C, H, W]``."""
    from tlt.data.image_arrays import resize_bilinear, to_network

    width, height = size
    batch = []
    for array in arrays:
        if array.shape[:2] != (height, width):
            array = resize_bilinear(array, height, width)
        batch.append(to_network(array, preprocessing))
    return np.stack(batch).astype(np.float32)


def infer_detection(model_uri: str, inference_input: str | Path, output_dir: str | Path, *,
                    key: str | None = None, batch_size: int = 1, kitti_dump: bool = False,
                    box_overlay: bool = False, cluster_params: str | None = None,
                    line_width: int = 2, output_cov: str = "output_cov",
                    output_bbox: str = "output_bbox", progress: bool = True,
                    framework: str | None = None) -> DetectionInferenceResult:
    """Detect objects in one image or a folder of images.

    Args:
        model_uri: the DetectNet_v2 .tlt model (local, gs:// or s3://).
        inference_input: an image file or a folder of images.
        output_dir: local folder for ``labels/`` and ``images_annotated/``.
        key: the model's key (None: plain model file).
        batch_size: images per forward pass.
        kitti_dump: write ``labels/<stem>.txt`` (KITTI, 16 fields, score in [0, 1]).
        box_overlay: write ``images_annotated/<name>`` (boxes drawn on the original image).
        cluster_params: inference clustering JSON; default: the model's stored spec.
        line_width: box outline width in pixels.
        output_cov: the coverage layer (channels-first or channels-last output), or TLT's blob
            name of it (``output_cov/Sigmoid``).
        output_bbox: the bbox layer, or its blob name (``output_bbox/BiasAdd``).
        progress: show a progress bar.
        framework: ``tlt`` (Keras), ``onnx`` (an export) or ``engine`` (a tlt-converter engine);
            default from the name. Exports and engines run without TensorFlow.

    Returns:
        Per readable image its detections in its own pixels, plus the skipped images.

    Raises:
        DataError: neither output asked for, a bad argument, ``output_dir`` is an existing file,
            no input image, or (single image) an unreadable one.
        SpecError: the cluster-params file is invalid or does not match the model's classes.
        ModelFileError, ModelKeyError: the model cannot be loaded or is not a detection model.
    """
    from tlt.artifacts import write_metadata

    if not (kitti_dump or box_overlay):
        raise DataError("nothing to write: give -k/--kitti_dump (KITTI labels) and/or "
                        "-bo/--box_overlay (annotated images)")
    if batch_size < 1:
        raise DataError(f"--batch_size must be >= 1, got {batch_size}")
    if line_width < 1:
        raise DataError(f"--line_width must be >= 1, got {line_width}")
    out = check_output_dir(output_dir)
    files = list_input_images(inference_input)
    net, channels_last, metadata = _load_model(str(model_uri), key, output_cov, output_bbox,
                                               framework)
    _, height, width = (int(v) for v in metadata["input_dims"])
    post, labels, colours = _postprocessing(metadata, cluster_params, (width, height))

    labels_dir = out / LABELS_DIR if kitti_dump else None
    annotated_dir = out / ANNOTATED_DIR if box_overlay else None
    for folder in (labels_dir, annotated_dir):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    result = DetectionInferenceResult(frames=[], labels_dir=str(labels_dir) if labels_dir else None,
                                      annotated_dir=str(annotated_dir) if annotated_dir else None)
    single = Path(inference_input).is_file()
    with tqdm(total=len(files), desc="inference", unit="image", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            for frame, image in _detect_batch(net, channels_last, metadata, post, chunk, single,
                                              result.skipped):
                write_frame_outputs(frame, image, labels, colours, labels_dir, annotated_dir,
                                    line_width)
                result.frames.append(frame)
            bar.update(len(chunk))
    if not result.frames:
        raise DataError(f"{inference_input}: none of the {len(files)} images could be read")
    write_metadata(out, "infer", parents=[{"uri": str(model_uri)}], task="detection",
                   images=len(result.frames), skipped=[p for p, _ in result.skipped],
                   kitti_dump=bool(kitti_dump), box_overlay=bool(box_overlay),
                   cluster_params=str(cluster_params) if cluster_params else None)
    return result


def _detect_batch(net, channels_last: tuple[bool, bool], metadata: dict, post, paths: list[Path],
                  single: bool, skipped: list[tuple[str, str]]) -> list[tuple[FrameDetections, object]]:
    """Read, run and post-process one batch of images: ``(frame, PIL image)`` per readable one.

    An unreadable image is skipped with a warning (and recorded in ``skipped``) unless it is the
    only input, which raises its `DataError`.
    """
    channels, height, width = (int(v) for v in metadata["input_dims"])
    loaded = []
    for path in paths:
        try:
            loaded.append((path, *_read_image(path, channels)))
        except DataError as err:
            if single:
                raise
            _log.warning("skipping %s", err)
            skipped.append((str(path), str(err)))
    if not loaded:
        return []
    batch = _network_batch([a for _, _, a in loaded], (width, height),
                           metadata.get("preprocessing") or {})
    cov, bbox = (np.asarray(o) for o in net.predict_on_batch(batch))
    # Keras graphs may end channels-last; the post-processor reads [C, H, W].
    if channels_last[0]:
        cov = np.transpose(cov, (0, 3, 1, 2))
    if channels_last[1]:
        bbox = np.transpose(bbox, (0, 3, 1, 2))
    return [(to_source_pixels(path, image.size, post.process(cov[i], bbox[i]), (width, height)), image)
            for i, (path, image, _) in enumerate(loaded)]
