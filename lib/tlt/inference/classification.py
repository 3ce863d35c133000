"""``tlt-infer classification``: classify one image or every image of a folder."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from tlt.data.classification import ImageFolderSplit, read_class_map
from tlt.data.images import is_image_file, probe_image
from tlt.errors import DataError

__all__ = ["Prediction", "infer_classification"]

_log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One image's top class."""

    path: str
    class_index: int
    class_name: str
    confidence: float


def infer_classification(model_uri: str, *, image: str | None = None, image_dir: str | None = None,
                         key: str | None = None, batch_size: int = 1, class_map: str | None = None,
                         framework: str | None = None) -> tuple[list[Prediction], str | None]:
    """Classify ``image`` or every image under ``image_dir``.

    In folder mode ``result.csv`` is written into the folder (the guide's format: class index,
    file path, class name, plus the confidence as a last column) and its path returned.

    Args:
        model_uri: the .tlt model.
        image: a single image file.
        image_dir: a folder of images (searched recursively).
        key: the model's key.
        batch_size: images per forward pass.
        class_map: JSON class map (``-cm``) overriding the class names stored in the model.
        framework: ``tlt`` (Keras), ``onnx`` (an export) or ``engine`` (a tlt-converter engine);
            default from the name. Exports and engines run without TensorFlow.

    Returns:
        ``(predictions, result_csv_path or None)``.

    Raises:
        DataError: not exactly one of image/image_dir, a batch size below 1, a missing image or
            folder, a folder without images or whose result.csv is a folder, a class map that
            does not fit the model.
    """
    from tlt.evaluation.classification import load_any_classifier

    if bool(image) == bool(image_dir):
        raise DataError("give exactly one of an image (-i) or an image folder (-d)")
    if batch_size < 1:
        raise DataError(f"--batch_size must be >= 1, got {batch_size}")
    if image_dir and (Path(image_dir) / "result.csv").is_dir():
        raise DataError(f"{Path(image_dir) / 'result.csv'}: is a folder; results cannot be written there")
    predict, metadata, _ = load_any_classifier(model_uri, key=key, framework=framework)
    classes = read_class_map(class_map) if class_map else list(metadata["classes"])
    if len(classes) != len(metadata["classes"]):
        raise DataError(f"class map has {len(classes)} classes, the model predicts "
                        f"{len(metadata['classes'])}")
    readable = _readable_images(image, image_dir)
    split = ImageFolderSplit(root=Path(image_dir or Path(image).parent), class_names=classes,
                             files=readable, labels=[0] * len(readable))
    probabilities = predict(split, batch_size)
    predictions = [
        Prediction(path=path, class_index=int(p.argmax()), class_name=classes[int(p.argmax())],
                   confidence=float(p.max()))
        for path, p in zip(readable, probabilities)
    ]
    if image:
        pred = predictions[0]
        _log.info("Class label = %d", pred.class_index)
        _log.info("Class name = %s", pred.class_name)
        _log.info("Confidence = %.4f", pred.confidence)
        return predictions, None
    return predictions, _write_result_csv(predictions, Path(image_dir) / "result.csv")


def _readable_images(image: str | None, image_dir: str | None) -> list[str]:
    """The image, or the images under the folder (recursively, sorted) that can be read; an
    unreadable one is skipped with a warning in folder mode and raises in single-image mode."""
    if image:
        if not Path(image).is_file():
            raise DataError(f"{image}: image file does not exist")
        files = [str(image)]
    else:
        root = Path(image_dir)
        if not root.is_dir():
            raise DataError(f"{image_dir}: image folder does not exist")
        files = sorted(str(p) for p in root.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise DataError(f"{image_dir}: no .jpg/.jpeg/.png images found")
    readable = []
    for path in files:
        try:
            probe_image(path)
            readable.append(path)
        except DataError as err:
            if image:
                raise
            _log.warning("skipping %s", err)
    return readable


def _write_result_csv(predictions: list[Prediction], path: Path) -> str:
    """The guide's result.csv (class index, file, class name, confidence), written atomically."""
    from tlt.io.atomic import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for pred in predictions:
        writer.writerow([pred.class_index, pred.path, pred.class_name, f"{pred.confidence:.6f}"])
    atomic_write_text(str(path), buffer.getvalue())
    _log.info("wrote %d predictions to %s", len(predictions), path)
    return str(path)
