"""HTML reports: precision-recall curves (detection) and the confusion matrix (classification) as SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from tlt.evaluation.charts import Curve, confusion_matrix_svg, pr_chart_svg, pr_curve_points
from tlt.evaluation.report import classification_report_html, detection_report_html
from tlt.metrics.detection import Detection, GroundTruth, build_evaluation_settings, evaluate_detections

SVG = "{http://www.w3.org/2000/svg}"


def _svgs(page: str, kind: str) -> list[ET.Element]:
    """The inline ``<svg class=kind>`` elements of a report, parsed."""
    return [ET.fromstring(m) for m in re.findall(rf"<svg class='{kind}'.*?</svg>", page, re.S)]


def _texts(svg: ET.Element) -> list[str]:
    return [t.text for t in svg.iter(f"{SVG}text")]


def _path_points(d: str) -> list[tuple[float, float]]:
    return [tuple(map(float, xy.split(","))) for xy in re.findall(r"[-\d.]+,[-\d.]+", d)]


# car: 2 boxes, both found (the first after a false positive); pedestrian: 1 box, missed.
GT = [[GroundTruth("car", 0, 0, 100, 100), GroundTruth("car", 200, 0, 300, 100),
       GroundTruth("pedestrian", 400, 0, 430, 90)]]
DETS = [[Detection("car", 600, 0, 700, 100, 0.95), Detection("car", 0, 0, 100, 100, 0.9),
         Detection("car", 200, 0, 300, 100, 0.8)]]


def _results(mode="voc", ap_mode="11", classes=("car", "pedestrian", "cyclist")):
    return evaluate_detections(GT, DETS, build_evaluation_settings(mode=mode, ap_mode=ap_mode,
                                                                   classes=classes))


@pytest.mark.parametrize("mode,ap_mode", [("voc", "11"), ("voc", "all"), ("kitti", "40")])
def test_detection_report_has_a_chart_per_column_and_a_curve_per_class(mode, ap_mode):
    results = _results(mode, ap_mode)
    page = detection_report_html(results, 0.5, [])
    charts = _svgs(page, "pr-chart")
    assert len(charts) == len(results.buckets) == 4           # combined, easy, moderate, hard
    for chart, column in zip(charts, results.buckets):
        texts = _texts(chart)
        assert texts[0].startswith(f"{column} (mAP ")
        assert "recall" in texts and "precision" in texts     # axis titles
        assert {"0.0", "0.5", "1.0"} - set(texts) == {"0.5"}  # ticks at 0, 0.2, ..., 1
        paths = [p for p in chart.iter(f"{SVG}path") if p.get("class") == "pr-curve"]
        # car has a curve; the missed pedestrian's precision is 0 everywhere: a curve on the axis
        # (voc) or none (kitti: no true positive, no threshold); cyclist has no ground truth
        expected = ["car", "pedestrian"] if mode == "voc" else ["car"]
        assert [p.get("data-class") for p in paths] == expected
        legend = [t for t in texts if t.split()[0] in ("car", "pedestrian", "cyclist")]
        assert legend[2] == "cyclist n/a"


def test_voc_curve_follows_the_interpolated_precision():
    results = _results("voc", "11")
    chart = _svgs(detection_report_html(results, None, []), "pr-chart")[0]
    car = next(p for p in chart.iter(f"{SVG}path") if p.get("data-class") == "car")
    # ranked: FP, TP, TP -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1: interpolated 2/3 at every
    # one of the 11 recall points -> a flat line at 2/3 (plot area x 48..288, y 28..268)
    points = _path_points(car.get("d"))
    assert len(points) == 11
    assert points[0] == (48.0, pytest.approx(28 + 240 / 3, abs=0.06))
    assert points[-1] == (288.0, pytest.approx(28 + 240 / 3, abs=0.06))
    assert results.ap("car") == pytest.approx(100 * 2 / 3)


def test_kitti_padding_zeros_are_not_part_of_the_curve():
    results = _results("kitti", "40")
    res = results.per_class["car"]["combined"]
    assert len(res.recall) == 41 and res.recall[2:] == [0.0] * 39   # 2 thresholds, then padding
    assert pr_curve_points(res.recall, res.precision) == [(0.5, pytest.approx(2 / 3)),
                                                          (1.0, pytest.approx(2 / 3))]


def test_pr_chart_escapes_names_and_skips_empty_curves():
    svg = pr_chart_svg("t<1>", [Curve("a&b", (1, 2, 3), [0.5, 1.0], [1.0, 0.5], "a&b 75.00"),
                                Curve("none", (0, 0, 0), [], [])])
    root = ET.fromstring(svg)
    paths = [p for p in root.iter(f"{SVG}path")]
    assert [p.get("data-class") for p in paths] == ["a&b"]
    assert paths[0].get("stroke") == "rgb(1,2,3)"
    assert _path_points(paths[0].get("d")) == [(168.0, 28.0), (288.0, 148.0)]
    assert _texts(root)[0] == "t<1>" and "a&b 75.00" in _texts(root) and "none" in _texts(root)


METRICS = {
    "class_names": ["cat", "dog", "horse"], "accuracy": 0.7, "top_k": 2, "top_k_accuracy": 0.9,
    "num_images": 20, "confusion_matrix": [[5, 1, 0], [2, 6, 0], [0, 3, 3]],
    "per_class": {n: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": s}
                  for n, s in (("cat", 6), ("dog", 8), ("horse", 6))},
}


def test_classification_report_has_the_confusion_matrix_with_counts():
    page = classification_report_html(METRICS)
    (svg,) = _svgs(page, "confusion-matrix")
    cells = {(g.get("data-true"), g.get("data-predicted")): g for g in svg.iter(f"{SVG}g")
             if g.get("class") == "cell"}
    assert len(cells) == 9
    for i, true in enumerate(METRICS["class_names"]):
        for j, pred in enumerate(METRICS["class_names"]):
            cell = cells[(true, pred)]
            count = METRICS["confusion_matrix"][i][j]
            assert cell.get("data-count") == str(count)
            assert cell.find(f"{SVG}text").text == str(count)
    texts = _texts(svg)
    assert "true class" in texts and "predicted class" in texts
    assert texts.count("horse") == 2                      # row and column label
    # shaded by share of the row: the full diagonal cell darker than an off-diagonal one
    fill = lambda key: sum(map(int, re.findall(r"\d+", cells[key].find(f"{SVG}rect").get("fill"))))  # noqa: E731
    assert fill(("dog", "dog")) < fill(("dog", "cat")) < fill(("dog", "horse")) == 255 * 3


def test_confusion_matrix_escapes_class_names():
    root = ET.fromstring(confusion_matrix_svg(["<a>", "b"], [[1, 0], [0, 0]]))
    assert "<a>" in _texts(root)
    empty_row = [g for g in root.iter(f"{SVG}g") if g.get("data-true") == "b"]
    assert [g.get("data-count") for g in empty_row] == ["0", "0"]
