"""``tlt-infer detection`` on a DetectNet_v2 whose outputs are set by hand, so every box is known.

The model is the real network (ResNet-10 backbone, 64x32 input, a 4x2 grid) with the head
kernels zeroed: output_cov is sigmoid(bias) everywhere (car 8 -> 0.99966, pedestrian 0 -> 0.5)
and output_bbox decodes, in every cell (r, c), to car [16c+4, 16r+4, 16c+12, 16r+12] and
pedestrian [16c+6, 16r+6, 16c+10, 16r+10] of the network input. An image of size (W, H)
therefore gets 8 boxes per class, scaled by W/64 and H/32.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from det_fixtures import read_json, spec_text
from tlt.cli import infer

IN_W, IN_H = 64, 32
STRIDE = 16
COV_BIAS = {"car": 8.0, "pedestrian": 0.0}
# Box corners within a cell: xmin = g - L*35 with g = 16c + 0.5, so L = (0.5 - inset) / 35 etc.
INSET = {"car": (4, 12), "pedestrian": (6, 10)}
LTRB = {name: np.array([0.5 - a, 0.5 - a, b - 0.5, b - 0.5], np.float32) / 35.0
        for name, (a, b) in INSET.items()}
GREEN, MAGENTA, BLUE, GREY = (0, 255, 0), (255, 0, 255), (0, 0, 255), (128, 128, 128)


def _expected_boxes(width: int, height: int, name: str = "car") -> list[tuple[float, ...]]:
    sx, sy = width / IN_W, height / IN_H
    a, b = INSET[name]
    return sorted((sx * (16 * c + a), sy * (16 * r + a), sx * (16 * c + b), sy * (16 * r + b))
                  for r in range(IN_H // STRIDE) for c in range(IN_W // STRIDE))


def _score(coverage: float) -> float:
    return 1.0 - math.exp(-coverage)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from tlt import spec as spec_loader
    from tlt.data.classification_input import PREPROCESSING
    from tlt.io.modelfile import save_keras_model
    from tlt.models.detectnet_v2.model import build_detectnet_v2

    folder = tmp_path_factory.mktemp("infer_model")
    text = spec_text({"tfrecords": "unused/train*", "root": "unused"}, width=IN_W, height=IN_H)
    experiment = spec_loader.loads(text, "detection")
    classes = ["car", "pedestrian"]
    model = build_detectnet_v2(experiment.model_config, classes, input_height=IN_H,
                               input_width=IN_W, allow_small_input=True)
    cov = model.get_layer("output_cov_conv")
    kernel, _ = cov.get_weights()
    cov.set_weights([np.zeros_like(kernel), np.array([COV_BIAS[c] for c in classes], np.float32)])
    bbox = model.get_layer("output_bbox_conv")
    kernel, _ = bbox.get_weights()
    bbox.set_weights([np.zeros_like(kernel), np.concatenate([LTRB[c] for c in classes])])
    metadata = {"task": "detection", "arch": "resnet", "n_layers": 10, "classes": classes,
                "input_dims": [3, IN_H, IN_W], "preprocessing": PREPROCESSING, "stride": 16,
                "bbox_scale": 35.0, "bbox_offset": 0.5,
                "output_names": ["output_cov", "output_bbox"], "spec": text}
    path = folder / "probe.tlt"
    save_keras_model(model, path, metadata)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Grey images: 128x64 PNG (2x the input), 64x32 PNG (1x), 96x80 JPEG (other aspect)."""
    folder = tmp_path_factory.mktemp("infer_images")
    Image.new("RGB", (128, 64), GREY).save(folder / "a_double.png")
    Image.new("RGB", (64, 32), GREY).save(folder / "b_same.png")
    Image.new("RGB", (96, 80), GREY).save(folder / "c_other.jpg", quality=95)
    return folder


def _infer(*args) -> tuple[int, str, str]:
    from det_fixtures import run_main

    return run_main(infer.main, "detection", *args)


def _assert_boxes(found, expected) -> None:
    """Same boxes, up to the 2 decimals of the KITTI dump."""
    assert len(found) == len(expected)
    np.testing.assert_allclose(np.array(found), np.array(expected), atol=0.0051)


def _parse(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]


def _boxes(rows, name) -> list[tuple[float, ...]]:
    return sorted(tuple(float(v) for v in row[4:8]) for row in rows if row[0] == name)


def test_kitti_dump_one_file_per_image_with_known_boxes_and_scores(model_file, images, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = _infer("-m", model_file, "-i", images, "-o", out, "-k", "-bs", "2")
    assert code == 0, stderr
    assert "Processed 3 image(s), 48 box(es)" in stdout
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["a_double.txt", "b_same.txt",
                                                                  "c_other.txt"]
    assert not (out / "images_annotated").exists()
    for stem, size in (("a_double", (128, 64)), ("b_same", (64, 32)), ("c_other", (96, 80))):
        rows = _parse(out / "labels" / f"{stem}.txt")
        assert len(rows) == 16 and all(len(r) == 16 for r in rows)
        scores = [float(r[15]) for r in rows]
        assert all(0.0 <= s <= 1.0 for s in scores)
        for name in ("car", "pedestrian"):
            _assert_boxes(_boxes(rows, name), _expected_boxes(*size, name))
        car = 1 / (1 + math.exp(-COV_BIAS["car"]))
        assert {float(r[15]) for r in rows if r[0] == "car"} == {round(_score(car), 4)}
        assert {float(r[15]) for r in rows if r[0] == "pedestrian"} == {round(_score(0.5), 4)}
    meta = read_json(out / "metadata.json")
    assert meta["stage"] == "infer" and meta["images"] == 3 and meta["skipped"] == []


def test_box_overlay_keeps_size_and_format_and_draws_class_colours(model_file, images, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = _infer("-m", model_file, "-i", images, "-o", out, "-bo", "-lw", "3")
    assert code == 0, stderr
    assert not (out / "labels").exists()
    png = Image.open(out / "images_annotated" / "a_double.png")
    assert png.format == "PNG" and png.size == (128, 64)
    pixels = np.asarray(png.convert("RGB"))
    # Cell (0, 0) at 2x: car [8, 8, 24, 24] in palette green, pedestrian [12, 12, 20, 20] in
    # magenta; lines 3 px wide, drawn inwards from the edge.
    row = 16
    assert [tuple(pixels[row, x]) for x in range(6, 16)] == [
        GREY, GREY, GREEN, GREEN, GREEN, GREY, MAGENTA, MAGENTA, MAGENTA, GREY]
    assert tuple(pixels[row, 30]) == GREY               # between the boxes of cells 0 and 1
    assert tuple(pixels[8, 16]) == GREEN                # top edge of the car box
    jpeg = Image.open(out / "images_annotated" / "c_other.jpg")
    assert jpeg.format == "JPEG" and jpeg.size == (96, 80)
    # c_other is 1.5x wide, 2.5x tall: car box of cell (1, 2) is [54, 50, 66, 70].
    jpeg_pixels = np.asarray(jpeg.convert("RGB")).astype(int)
    assert np.abs(jpeg_pixels[60, 55] - GREEN).max() < 40
    assert np.abs(jpeg_pixels[60, 50] - GREY).max() < 40


def test_cluster_params_rename_filter_and_colour(model_file, images, tmp_path):
    params = tmp_path / "cluster.json"
    params.write_text(json.dumps({
        "dbscan_criterion": "IOU", "dbscan_eps": {"default": 0.15},
        "dbscan_min_samples": {"default": 0.05}, "min_cov_to_cluster": {"default": 0.005},
        "min_obj_height": {"default": 2}, "target_classes": ["car", "pedestrian"],
        "confidence_th": {"car": 0.3, "pedestrian": 0.6},
        "output_map": {"car": "automobile", "pedestrian": "person"},
        "color": {"car": "#0000ff"}, "postproc_classes": ["car", "pedestrian"],
        "image_height": 384, "image_width": 1240}), encoding="utf-8")
    out = tmp_path / "out"
    code, _, stderr = _infer("-m", model_file, "-i", images / "a_double.png", "-o", out, "-k", "-bo",
                             "-cp", params)
    assert code == 0, stderr
    rows = _parse(out / "labels" / "a_double.txt")
    # pedestrian (coverage 0.5) is below its confidence_th 0.6; car is renamed by output_map.
    assert {r[0] for r in rows} == {"automobile"}
    _assert_boxes(_boxes(rows, "automobile"), _expected_boxes(128, 64))
    pixels = np.asarray(Image.open(out / "images_annotated" / "a_double.png").convert("RGB"))
    assert tuple(pixels[16, 8]) == BLUE

    params_data = json.loads(params.read_text())
    params_data.update(confidence_th={}, postproc_classes=["pedestrian"])
    params.write_text(json.dumps(params_data), encoding="utf-8")
    code, _, stderr = _infer("-m", model_file, "-i", images / "a_double.png", "-o", out, "-k",
                             "-cp", params)
    assert code == 0, stderr
    assert {r[0] for r in _parse(out / "labels" / "a_double.txt")} == {"person"}


def test_cluster_params_with_a_class_the_model_lacks_is_one_clear_error(model_file, images, tmp_path):
    params = tmp_path / "cluster.json"
    params.write_text(json.dumps({
        "dbscan_eps": {"default": 0.15}, "dbscan_min_samples": {"default": 0.05},
        "min_cov_to_cluster": {"default": 0.005}, "min_obj_height": {"default": 2},
        "target_classes": ["car", "cyclist", "pedestrian"], "image_height": 32,
        "image_width": 64}), encoding="utf-8")
    code, stdout, stderr = _infer("-m", model_file, "-i", images, "-o", tmp_path / "o", "-k",
                                  "-cp", params)
    assert code == 2
    lines = [l for l in stderr.splitlines() if "error" in l]
    assert lines == [f"tlt-infer: error: {params}: target_classes names 'cyclist', which the model "
                     "does not have (model classes: car, pedestrian)"]
    assert not (tmp_path / "o" / "labels").exists()

    params_data = json.loads(params.read_text())
    params_data["target_classes"] = ["pedestrian", "car"]
    params.write_text(json.dumps(params_data), encoding="utf-8")
    code, _, stderr = _infer("-m", model_file, "-i", images, "-o", tmp_path / "o", "-k", "-cp", params)
    assert code == 2
    assert (f"tlt-infer: error: {params}: target_classes must be the model's classes in training "
            "order (car, pedestrian), got pedestrian, car") in stderr


def test_corrupt_image_is_skipped_and_listed(model_file, images, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a_double.png", "b_same.png"):
        (folder / name).write_bytes((images / name).read_bytes())
    data = (images / "a_double.png").read_bytes()
    (folder / "broken.png").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, stdout, stderr = _infer("-m", model_file, "-i", folder, "-o", out, "-k")
    assert code == 0, stderr
    assert "Processed 2 image(s)" in stdout
    assert "Skipped 1 unreadable image(s):" in stdout
    assert f"{folder / 'broken.png'}: truncated PNG image" in stdout
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["a_double.txt", "b_same.txt"]
    assert read_json(out / "metadata.json")["skipped"] == [str(folder / "broken.png")]


def test_named_output_layers_gpu_flag_and_argument_errors(model_file, images, tmp_path):
    reference = tmp_path / "ref"
    assert _infer("-m", model_file, "-i", images / "b_same.png", "-o", reference, "-k")[0] == 0
    # The 1x1 convolutions before the channels-first permutes (the guide's "layer before reshape").
    out = tmp_path / "conv"
    code, _, stderr = _infer("-m", model_file, "-i", images / "b_same.png", "-o", out, "-k", "-g", "0",
                             "--output_cov", "output_cov_conv", "--output_bbox", "output_bbox_conv")
    assert code == 0, stderr
    assert "-g 0:" in stderr
    assert (out / "labels" / "b_same.txt").read_text() == (reference / "labels" / "b_same.txt").read_text()

    code, _, stderr = _infer("-m", model_file, "-i", images, "-o", tmp_path / "x")
    assert code != 0
    assert stderr.strip().splitlines()[-1] == (
        "tlt-infer: error: nothing to write: give -k/--kitti_dump (KITTI labels) and/or "
        "-bo/--box_overlay (annotated images)")
    code, _, stderr = _infer("-m", model_file, "-i", images, "-o", tmp_path / "x", "-k",
                             "--output_cov", "no_such_layer")
    assert code != 0
    assert stderr.strip().splitlines()[-1] == (
        f"tlt-infer: error: {model_file}: has no layer 'no_such_layer' (its outputs are "
        "output_cov, output_bbox; TLT's blob names output_cov/Sigmoid and output_bbox/BiasAdd work too)")


def test_tlt_blob_names_select_the_output_layers(model_file, images, tmp_path):
    """The guide and DeepStream configs name the outputs output_cov/Sigmoid and output_bbox/BiasAdd."""
    reference = tmp_path / "ref"
    assert _infer("-m", model_file, "-i", images / "a_double.png", "-o", reference, "-k")[0] == 0
    out = tmp_path / "blobs"
    code, stdout, stderr = _infer("-m", model_file, "-i", images / "a_double.png", "-o", out, "-k",
                                  "--output_cov", "output_cov/Sigmoid",
                                  "--output_bbox", "output_bbox/BiasAdd")
    assert code == 0, stderr
    assert "Processed 1 image(s), 16 box(es)" in stdout
    labels = (out / "labels" / "a_double.txt").read_text()
    assert labels == (reference / "labels" / "a_double.txt").read_text()
    _assert_boxes(_boxes(_parse(out / "labels" / "a_double.txt"), "car"), _expected_boxes(128, 64))

    # A blob of the other head (the pre-sigmoid BiasAdd of coverage) is not silently taken.
    code, _, stderr = _infer("-m", model_file, "-i", images / "a_double.png", "-o", tmp_path / "x",
                             "-k", "--output_cov", "output_cov/BiasAdd")
    assert code == 1
    assert stderr.strip().splitlines() == [
        "tlt-infer: error: --output_cov 'output_cov/BiasAdd': the output_cov blob of a DetectNet_v2 "
        "is <layer>/Sigmoid (e.g. output_cov/Sigmoid), not /BiasAdd"]
    assert not (tmp_path / "x").exists()
