"""INT8 calibration at export time: images -> per-tensor activation ranges -> calibration cache.

The guide's design (chapter 9): calibration images are needed once, where the model is exported;
the inference machine gets only the export and the cache. Images are preprocessed exactly as
evaluation and inference feed the network (`tlt.data.classification_input.load_image_for_inference`:
decode, bilinear resize to the input size, the model's pixel scaling, CHW), the fp32 ONNX graph
runs on ``batches`` x ``batch_size`` of them in ONNX Runtime, and each activation's absolute
maximum becomes its scale in TensorRT's cache format (`tlt.engines.calibration_cache`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from tlt.data.images import is_image_file, probe_image
from tlt.engines.calibration_cache import CalibrationCache
from tlt.errors import DataError

__all__ = ["list_calibration_images", "calibration_batches", "activation_ranges", "calibrate"]

_log = logging.getLogger(__name__)


def list_calibration_images(image_dir: str | Path, needed: int) -> list[Path]:
    """The first ``needed`` readable images under ``image_dir`` (recursive, sorted).

    Raises:
        DataError: the folder is missing, holds no image, or fewer than ``needed`` readable ones.
    """
    root = Path(image_dir)
    if not root.is_dir():
        raise DataError(f"--cal_data_file {image_dir}: no such folder of calibration images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise DataError(f"--cal_data_file {image_dir}: no .jpg/.jpeg/.png images in this folder")
    readable = []
    for path in files:
        try:
            probe_image(path)
        except DataError as err:
            _log.warning("skipping calibration image: %s", err)
            continue
        readable.append(path)
        if len(readable) == needed:
            return readable
    raise DataError(f"--cal_data_file {image_dir}: {len(readable)} readable image(s), calibration "
                    f"needs {needed} (--batches x --cal_batch_size); add images or lower them")


def calibration_batches(files: Sequence[Path], input_dims: Sequence[int],
                        batch_size: int) -> Iterator[np.ndarray]:
    """Yield ``[batch_size, C, H, W]`` float32 batches preprocessed as in training."""
    from tlt.data.classification_input import load_image_for_inference

    dims = tuple(int(d) for d in input_dims)
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        yield np.stack([load_image_for_inference(str(p), dims) for p in chunk]).astype(np.float32)


def activation_ranges(onnx_bytes: bytes, batches, input_name: str) -> dict[str, float]:
    """Absolute maximum of every float activation of the graph over the batches.

    Args:
        onnx_bytes: the fp32 export.
        batches: iterable of ``[N, C, H, W]`` arrays.
        input_name: the graph input.

    Returns:
        Tensor name -> max |value| (graph input included), in graph order.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory(prefix="tlt-calib-") as tmp:
        model_path = Path(tmp) / "model.onnx"
        model_path.write_bytes(onnx_bytes)
        calibrator = create_calibrator(model_path, None, str(Path(tmp) / "augmented.onnx"),
                                       CalibrationMethod.MinMax,
                                       extra_options={"symmetric": False})
        calibrator.collect_data(_Reader())
        ranges = calibrator.compute_data()
    return {name: float(np.max(np.abs(np.concatenate([np.ravel(v) for v in data.range_value]))))
            for name, data in ranges.items()}


def calibrate(onnx_bytes: bytes, image_dir: str | Path, input_dims: Sequence[int], *,
              input_name: str, batches: int, batch_size: int) -> CalibrationCache:
    """Compute the INT8 calibration cache of an export from a folder of images.

    Args:
        onnx_bytes: the fp32 export.
        image_dir: ``--cal_data_file``: a folder of images like the training data.
        input_dims: ``(C, H, W)``.
        input_name: the graph input.
        batches: ``--batches``.
        batch_size: ``--cal_batch_size``.

    Raises:
        DataError: bad counts, or too few readable images.
    """
    if batches < 1 or batch_size < 1:
        raise DataError(f"--batches and --cal_batch_size must be >= 1, got {batches} and "
                        f"{batch_size}")
    files = list_calibration_images(image_dir, batches * batch_size)
    _log.info("calibrating on %d images (%d batches of %d) from %s", len(files), batches,
              batch_size, image_dir)
    amax = activation_ranges(onnx_bytes, calibration_batches(files, input_dims, batch_size),
                             input_name)
    return CalibrationCache.from_ranges(_graph_order(onnx_bytes, amax))


def _graph_order(onnx_bytes: bytes, amax: dict[str, float]) -> dict[str, float]:
    """The ranges ordered input first, then by producing node (readable, stable caches)."""
    import onnx

    graph = onnx.load_from_string(onnx_bytes).graph
    order = [i.name for i in graph.input] + [o for n in graph.node for o in n.output]
    return {name: amax[name] for name in order if name in amax}
