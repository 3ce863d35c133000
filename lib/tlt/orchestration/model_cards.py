"""What a pipeline says about a model artifact: its file, its card, its speed, and comparisons.

A *card* describes one model file as the Kubeflow UI shows it on a Model artifact and as the
evaluate reports compare models: format (``tlt``, ``onnx``, ``engine``), precision, input dims,
output names, parameter count (Keras models), size on disk and CPU inference speed. The
comparison table puts cards and their accuracy / mAP side by side (before and after pruning;
Keras vs fp32 engine vs int8 engine).
"""

from __future__ import annotations

import html
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tlt.errors import PipelineError

__all__ = ["ModelCard", "MODEL_SUFFIXES", "model_file", "describe_model", "images_per_second",
           "comparison_html", "insert_section"]

#: Model files an artifact folder may hold, in the order they are looked for.
MODEL_SUFFIXES = (".tlt", ".engine", ".plan", ".trt", ".etlt", ".onnx")


@dataclass
class ModelCard:
    """One model as the reports and the UI describe it.

    Attributes:
        label: the row's name in a comparison (``unpruned``, ``int8 engine`` ...).
        file: the model file.
        format: ``tlt`` (Keras), ``onnx`` (an export) or ``engine``.
        precision: fp32, fp16 or int8.
        input_dims: ``[C, H, W]``.
        output_names: the model's outputs.
        size_bytes: size of the model file on disk.
        params: trainable and non-trainable parameters (Keras models; None otherwise).
        images_per_second: CPU inference speed measured here (None when not measured).
        metric: accuracy (classification) or mAP (detection) in % (None until evaluated).
    """

    label: str
    file: str
    format: str
    precision: str
    input_dims: list[int]
    output_names: list[str]
    size_bytes: int
    params: int | None = None
    images_per_second: float | None = None
    metric: float | None = None

    def metadata(self, metric_name: str) -> dict[str, Any]:
        """The card as Model artifact metadata (``metric`` under ``metric_name``)."""
        meta = {k: v for k, v in asdict(self).items() if k not in ("label", "metric", "file")}
        meta["model_file"] = Path(self.file).name
        meta[metric_name] = self.metric
        return {k: v for k, v in meta.items() if v is not None}


def model_file(folder: str | Path) -> Path:
    """The model file of an artifact folder (train, retrain, prune, export or build_engine output).

    The folder's ``metadata.json`` names it (``model``) when it can; else the first file with a
    suffix of `MODEL_SUFFIXES`.

    Raises:
        PipelineError: the folder holds no model file.
    """
    from tlt.artifacts import read_metadata

    root = Path(folder)
    named = read_metadata(root).get("model") if root.is_dir() else None
    if isinstance(named, str) and (root / named).is_file():
        return root / named
    for suffix in MODEL_SUFFIXES:
        found = sorted(root.glob(f"*{suffix}"))
        if found:
            return found[0]
    raise PipelineError(f"{folder}: no model file ({', '.join('*' + s for s in MODEL_SUFFIXES)}) "
                        "in this artifact folder")


def describe_model(path: str | Path, *, key: str | None, label: str = "",
                   framework: str | None = None) -> tuple[ModelCard, Callable[[np.ndarray], Any]]:
    """The card of a model file and a function running one ``[N, C, H, W]`` batch through it.

    Args:
        path: a .tlt model, an export (.etlt/.onnx) or an engine with its sidecar.
        key: the model key (.tlt and .etlt).
        label: the card's label; default its format and precision.
        framework: ``tlt``, ``onnx`` or ``engine``; default from the name.
    """
    from tlt.inference.deployed import load_deployed, resolve_framework

    path = str(path)
    fmt = resolve_framework(path, framework or None)
    size = Path(path).stat().st_size
    if fmt == "tlt":
        from tlt.io.modelfile import load_keras_model

        model, meta = load_keras_model(path, key=key, compile=False)
        card = ModelCard(label or "Keras (.tlt)", path, "tlt", "fp32",
                         [int(d) for d in model.input.shape[1:]],
                         [str(n) for n in model.output_names], size, params=int(model.count_params()))
        return card, model.predict_on_batch
    deployed = load_deployed(path, framework=fmt, key=key)
    info = deployed.engine.info
    card = ModelCard(label or deployed.description, path, fmt, info.precision,
                     [int(d) for d in deployed.input_dims], list(deployed.output_names), size)
    return card, deployed.run


def images_per_second(run: Callable[[np.ndarray], Any], input_dims: Sequence[int], *,
                      batch_size: int = 8, min_seconds: float = 1.0, max_batches: int = 50) -> float:
    """CPU inference speed of ``run`` on random ``[batch_size, C, H, W]`` batches.

    One warm-up batch (graph building, allocation) is not timed; then batches run until
    ``min_seconds`` have passed or ``max_batches`` ran, whichever comes first.
    """
    batch = np.random.default_rng(0).uniform(-1.0, 1.0, (batch_size, *input_dims)).astype(np.float32)
    run(batch)
    done, started = 0, time.perf_counter()
    while done < max_batches * batch_size and (done == 0 or time.perf_counter() - started < min_seconds):
        run(batch)
        done += batch_size
    return done / (time.perf_counter() - started)


def _cell(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def comparison_html(title: str, cards: Sequence[ModelCard], metric_name: str) -> str:
    """An HTML section: one row per card, relative size and speed against the first row.

    Args:
        title: the section heading.
        cards: the models, the reference first.
        metric_name: the name of `ModelCard.metric` (``accuracy`` or ``mAP``).
    """
    ref = cards[0]
    head = ["model", "format", "precision", "parameters", "size on disk (MB)", "size vs first",
            "CPU images/s", "speed vs first", f"{metric_name} (%)", f"{metric_name} change (pt)"]
    rows = []
    for card in cards:
        speed_ratio = (card.images_per_second / ref.images_per_second
                       if card.images_per_second and ref.images_per_second else None)
        change = (card.metric - ref.metric
                  if card.metric is not None and ref.metric is not None else None)
        rows.append([card.label, card.format, card.precision, _cell(card.params, ","),
                     f"{card.size_bytes / 1e6:.3f}", f"{card.size_bytes / ref.size_bytes:.2f}x",
                     _cell(card.images_per_second, ".1f"), _cell(speed_ratio, ".2f") + (
                         "x" if speed_ratio is not None else ""),
                     _cell(card.metric, ".2f"), _cell(change, "+.2f")])
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return (f'<h2>{html.escape(title)}</h2>\n<table class="comparison" border="1" '
            f'cellpadding="4"><tr>{cells}</tr>{body}</table>\n'
            "<p>Speed: one CPU process here, random inputs at the model's input size, after one "
            "warm-up batch. Size: the model file alone.</p>\n")


def insert_section(report: str, section: str) -> str:
    """``report`` (a whole HTML page) with ``section`` placed right after its first heading."""
    marker = report.find("</h1>")
    if marker >= 0:
        at = marker + len("</h1>")
        return report[:at] + "\n" + section + report[at:]
    marker = report.find("<body>")
    at = marker + len("<body>") if marker >= 0 else 0
    return report[:at] + section + report[at:]
