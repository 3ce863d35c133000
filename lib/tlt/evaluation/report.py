"""Self-contained HTML evaluation reports (the Kubeflow UI renders an HTML artifact as is).

Charts are inline SVG (`tlt.evaluation.charts`) and sample frames base64 PNG data URIs, so the
report is one file that needs no server.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from tlt.evaluation.charts import Curve, confusion_matrix_svg, pr_chart_svg

__all__ = ["CLASS_COLORS", "draw_boxes", "classification_report_html", "detection_report_html",
           "annotated_validation_samples"]

#: Box colours by class index (RGB), as tlt-infer uses when no cluster file names colours.
CLASS_COLORS = [(0, 200, 0), (255, 0, 255), (0, 200, 255), (255, 160, 0), (255, 60, 60),
                (80, 80, 255), (255, 255, 0), (160, 80, 40)]


def draw_boxes(image_rgb: np.ndarray, boxes, *, line_width: int = 2):
    """Draw ``boxes`` (iterable of (xmin, ymin, xmax, ymax, rgb colour, label)) on a copy of the image.

    Returns:
        A PIL image.
    """
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.asarray(image_rgb, dtype=np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(img)
    for xmin, ymin, xmax, ymax, color, label in boxes:
        # Sorted corners: PIL refuses an inverted box, and a report must draw whatever it is given.
        (x0, x1), (y0, y1) = sorted((float(xmin), float(xmax))), sorted((float(ymin), float(ymax)))
        draw.rectangle([x0, y0, x1, y1], outline=tuple(color),
                       width=max(1, int(line_width)))
        if label:
            draw.text((float(xmin) + 2, max(0.0, float(ymin) - 11)), str(label), fill=tuple(color))
    return img


def _png_data_uri(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _page(title: str, body: list[str]) -> str:
    style = ("body{font-family:sans-serif;margin:1.5em;max-width:1400px}"
             "table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:6px}"
             "figure img{min-width:320px;height:auto}"
             "figcaption{font-size:small;color:#555}.charts{display:flex;flex-wrap:wrap;gap:12px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            + "".join(body) + "</body></html>\n")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt_ap(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def classification_report_html(metrics: dict) -> str:
    """Report of `tlt.metrics.classification.classification_metrics`: per-class table and an
    SVG confusion matrix (rows true class, columns predicted class)."""
    names = metrics["class_names"]
    rows = [[n, f"{metrics['per_class'][n]['precision']:.4f}", f"{metrics['per_class'][n]['recall']:.4f}",
             f"{metrics['per_class'][n]['f1']:.4f}", str(metrics['per_class'][n]['support'])]
            for n in names]
    return _page("Classification evaluation", [
        f"<p>Accuracy {metrics['accuracy']:.4f}, top-{metrics['top_k']} accuracy "
        f"{metrics['top_k_accuracy']:.4f} on {metrics['num_images']} images.</p>",
        _table(["class", "precision", "recall", "f1", "support"], rows),
        "<h2>Confusion matrix</h2><p>Rows: true class; columns: predicted class; cells shaded by "
        "their share of the row.</p>",
        confusion_matrix_svg(names, metrics["confusion_matrix"]),
    ])


def _pr_charts(results) -> str:
    """One precision-recall chart per column (combined, then each bucket), a curve per class."""
    charts = []
    for column in results.buckets:
        curves = []
        for i, name in enumerate(results.classes):
            r = results.per_class[name][column]
            curves.append(Curve(name, CLASS_COLORS[i % len(CLASS_COLORS)], r.recall, r.precision,
                                f"{name} {_fmt_ap(r.ap)}"))
        charts.append(pr_chart_svg(f"{column} (mAP {_fmt_ap(results.mean_ap[column])})", curves))
    return "<div class='charts'>" + "".join(charts) + "</div>"


def _describe_points(results) -> str:
    if results.mode == "kitti":
        return ("recall and interpolated precision at each score threshold of the KITTI devkit; "
                "the devkit's AP averages these values by threshold index, so with fewer than 41 "
                "counted objects in a column its AP is below the area under the curve")
    if results.ap_mode == "all":
        return "the interpolated precision at each recall step"
    return f"the interpolated precision at the {results.ap_mode} recall points AP averages"


def detection_report_html(results, validation_cost: float | None, samples) -> str:
    """Report of a `tlt.metrics.detection.DetectionResults`: AP table, precision-recall curves
    per column and class, and annotated sample frames.

    Args:
        results: the AP results.
        validation_cost: the validation cost, if computed.
        samples: list of ``(frame id, PIL image)``.
    """
    header = ["class"] + list(results.buckets)
    rows = [[c] + [_fmt_ap(results.per_class[c][b].ap) for b in results.buckets]
            for c in results.classes]
    rows.append(["mAP"] + [_fmt_ap(results.mean_ap[b]) for b in results.buckets])
    figures = "".join(f"<figure><img src='{_png_data_uri(img)}'><figcaption>{html.escape(fid)}"
                      f"</figcaption></figure>" for fid, img in samples)
    cost = "" if validation_cost is None else f" Validation cost {validation_cost:.6f}."
    ap_mode = "area under the curve" if results.ap_mode == "all" else f"{results.ap_mode} recall points"
    return _page("DetectNet_v2 evaluation", [
        f"<p>Mode {html.escape(results.mode)}, AP with {html.escape(ap_mode)}, in %, on "
        f"{results.num_frames} frames.{cost} <i>combined</i>: every object of the class; the "
        "other columns hold the objects of each evaluation bucket (height, occlusion, "
        "truncation).</p>",
        _table(header, rows),
        f"<h2>Precision-recall curves</h2><p>Points: {html.escape(_describe_points(results))}. "
        "A class without ground truth in a column has no curve.</p>",
        _pr_charts(results),
        "<h2>Validation frames</h2><p>Thin white: ground truth; coloured: detections with "
        "confidence.</p>", figures,
    ])


def annotated_validation_samples(model, experiment, *, max_frames: int = 4):
    """Draw ground truth and detections on the first validation frames (network resolution).

    Returns:
        A list of ``(frame id, PIL image)``.
    """
    from tlt.data.classification_input import PREPROCESSING
    from tlt.data.detection_frames import iter_validation_frames
    from tlt.models.detectnet_v2.postprocess import build_postprocessor

    post = build_postprocessor(experiment)
    names = [t.name.lower() for t in experiment.cost_function_config.target_classes]
    colors = {n: CLASS_COLORS[i % len(CLASS_COLORS)] for i, n in enumerate(names)}
    samples = []
    for batch in iter_validation_frames(experiment, batch_size=max_frames):
        cov, bbox = model.predict_on_batch(batch.images)
        for i, frame_id in enumerate(batch.frame_ids[:max_frames]):
            chw = batch.images[i]
            rgb = np.clip(np.transpose(chw, (1, 2, 0)) / PREPROCESSING["scale"] + PREPROCESSING["offset"],
                          0, 255)
            if rgb.shape[2] == 1:
                rgb = np.repeat(rgb, 3, axis=2)
            sx, sy, tx, ty = batch.to_network[i]
            boxes = [(b[0] * sx + tx, b[1] * sy + ty, b[2] * sx + tx, b[3] * sy + ty, (255, 255, 255), "")
                     for b, cid in zip(batch.boxes[i], batch.class_ids[i]) if cid >= 0]
            size = (rgb.shape[1], rgb.shape[0])
            for det in post.process(np.asarray(cov[i]), np.asarray(bbox[i]), size):
                boxes.append((det.xmin, det.ymin, det.xmax, det.ymax, colors.get(det.class_name, (255, 0, 0)),
                              f"{det.class_name} {det.confidence:.2f}"))
            samples.append((frame_id, draw_boxes(rgb, boxes, line_width=1)))
        break
    return samples
