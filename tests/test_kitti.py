"""KITTI label parsing, image header probing and image/label pairing."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tlt.data.kitti import (
    DataReport, KittiObject, normalise_extension, pair_frames, parse_label_text, probe_image,
    read_label_file,
)
from tlt.errors import DataError

CAR = "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59"


def _image_bytes(fmt: str, size=(40, 30), mode="RGB") -> bytes:
    buf = io.BytesIO()
    # Noise, so that most of the file is pixel data and cutting it keeps the header intact.
    noise = bytes((i * 7919) % 251 for i in range(size[0] * size[1] * 3))
    image = Image.frombytes("RGB", size, noise)
    (image if mode == "RGB" else image.convert(mode)).save(buf, fmt)
    return buf.getvalue()


def test_valid_line_is_parsed_and_class_lower_cased():
    (obj,) = parse_label_text(CAR + "\n\n")
    assert obj == KittiObject("car", 0.0, 0, -1.58, 587.01, 173.33, 614.12, 200.12, 1.65, 1.67,
                              3.64, -0.65, 1.71, 46.70, -1.59, None)
    (ped,) = parse_label_text(CAR.replace("Car", "PEDESTRIAN"))
    assert ped.object_class == "pedestrian"


def test_sixteenth_field_is_the_score():
    (obj,) = parse_label_text(CAR + " 0.87")
    assert obj.score == pytest.approx(0.87)


def test_occlusion_3_unknown_is_valid():
    (obj,) = parse_label_text(CAR.replace(" 0.00 0 ", " 0.00 3 ", 1))
    assert obj.occlusion == 3


@pytest.mark.parametrize("line, message", [
    ("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70",
     "14 fields, expected 15 (or 16 with a score)"),
    (CAR.replace("614.12", "6l4.12"), "field 7 (x2) is '6l4.12', expected a number"),
    (CAR.replace("46.70", "nan"), "field 14 (z) is 'nan', expected a number"),
    (CAR.replace("587.01", "-3.5"), "negative coordinate x1=-3.5, expected >= 0"),
    (CAR.replace("587.01 173.33 614.12", "620.00 173.33 614.12"),
     "box has x1=620.00 >= x2=614.12, expected x1 < x2 (left < right)"),
    (CAR.replace("173.33 614.12 200.12", "210.00 614.12 200.12"),
     "box has y1=210.00 >= y2=200.12, expected y1 < y2 (top < bottom)"),
    (CAR.replace(" 0.00 0 ", " 0.00 5 ", 1), "occlusion is 5, expected an integer in 0..3"),
    (CAR.replace(" 0.00 0 ", " 1.50 0 ", 1), "truncation is 1.50, expected a number in [0, 1]"),
    (CAR.replace("614.12 200.12", "614.12 300.00"),
     "box (587.01, 173.33, 614.12, 300) is outside the 640x240 image, expected x2 <= 640 and "
     "y2 <= 240"),
])
def test_malformed_line_reported_with_file_and_line(line, message):
    text = f"{CAR}\n{line}\n{CAR}\n"
    report = DataReport()
    objects = parse_label_text(text, path="labels/000042.txt", width=640, height=240,
                               report=report)
    assert len(objects) == 2
    assert report.skipped_objects == 1
    assert report.messages == [f"labels/000042.txt:2: {message}"]
    with pytest.raises(DataError) as err:
        parse_label_text(text, path="labels/000042.txt", width=640, height=240, strict=True)
    assert str(err.value) == f"labels/000042.txt:2: {message}"


def test_dontcare_inverted_box_is_normalised_not_an_error():
    line = "DontCare -1 -1 -10 781.17 175.52 780.37 174.72 -1 -1 -1 -1000 -1000 -1000 -10"
    report = DataReport()
    (obj,) = parse_label_text(line, report=report, width=1242, height=375)
    assert (obj.object_class, obj.occlusion, obj.truncation) == ("dontcare", -1, -1.0)
    assert (obj.x1, obj.y1, obj.x2, obj.y2) == (780.37, 174.72, 781.17, 175.52)
    assert report.messages == [] and report.skipped_objects == 0


def test_read_label_file_rejects_binary(tmp_path):
    path = tmp_path / "000001.txt"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=r"000001.txt:1: not UTF-8 text .* expected a KITTI label"):
        read_label_file(path)


def test_read_label_file_names_line_and_byte_of_bad_encoding(tmp_path):
    path = tmp_path / "000002.txt"
    good = b"Car 0.00 0 0.1 10 10 40 30 1.5 1.6 4.0 1 1.65 20 0.2\n"
    path.write_bytes(good + good + b"Pedestrian 0.00 0 0.1 \xe9 10 40 30 1 1 1 1 1 1 1\n")
    with pytest.raises(DataError) as err:
        read_label_file(path)
    assert str(err.value) == (f"{path}:3: not UTF-8 text (invalid continuation byte at byte "
                              f"{2 * len(good) + 22}), expected a KITTI label file")


def test_probe_png_and_jpeg_sizes_without_decoding():
    png = probe_image(_image_bytes("PNG", (40, 30)), "a.png")
    jpg = probe_image(_image_bytes("JPEG", (64, 48)), "b.jpg", "jpeg")
    palette = probe_image(_image_bytes("PNG", (17, 9), mode="P"), "c.png", "png")
    assert (png.width, png.height, png.format) == (40, 30, "png")
    assert (jpg.width, jpg.height, jpg.format) == (64, 48, "jpeg")
    assert (palette.width, palette.height) == (17, 9)


def test_truncated_images_are_detected():
    jpeg = _image_bytes("JPEG", (64, 48))
    with pytest.raises(DataError) as err:
        probe_image(jpeg[: len(jpeg) // 2], "images/000003.jpg", "jpeg")
    assert str(err.value) == ("images/000003.jpg: truncated JPEG (no FFD9 end-of-image marker), "
                              "expected a complete JPEG file")
    png = _image_bytes("PNG", (64, 48))
    with pytest.raises(DataError, match=r"^images/000004.png: truncated PNG \(no IEND chunk\)"):
        probe_image(png[:-20], "images/000004.png", "png")
    with pytest.raises(DataError, match=r"^images/x.png: cannot read the image header .*"
                                        r"expected a PNG image$"):
        probe_image(b"not an image at all", "images/x.png", "png")
    # A JPEG named .png is not silently accepted as PNG.
    with pytest.raises(DataError, match="expected a PNG image"):
        probe_image(jpeg, "images/y.png", "png")


def test_normalise_extension():
    assert normalise_extension("png") == ".png"
    assert normalise_extension(".JPG") == ".jpg"
    with pytest.raises(DataError, match=r"unknown image extension '.tif' .*expected one of "
                                        r"\.jpeg, \.jpg, \.png"):
        normalise_extension(".tif")


def test_pair_frames_reports_unpaired_files(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for fid in ("000001", "000002", "000003"):
        (tmp_path / "images" / f"{fid}.png").write_bytes(b"x")
    (tmp_path / "images" / "000009.jpg").write_bytes(b"x")  # other extension: ignored
    for fid in ("000002", "000003", "000004"):
        (tmp_path / "labels" / f"{fid}.txt").write_text(CAR)
    report = DataReport()
    pairs = pair_frames(tmp_path / "images", tmp_path / "labels", ".png", report)
    assert list(pairs) == ["000002", "000003"]
    assert report.images_without_labels == ["000001"]
    assert report.labels_without_images == ["000004"]


def test_real_kitti_frames(kitti_samples):
    report = DataReport()
    pairs = pair_frames(kitti_samples / "images", kitti_samples / "labels", ".png", report)
    assert list(pairs) == ["000000", "000001", "000002", "000003", "000004", "000005", "000007"]
    assert report.images_without_labels == [] and report.labels_without_images == []
    sizes, classes = {}, set()
    for fid, (image, label) in pairs.items():
        with open(image, "rb") as f:
            info = probe_image(f.read(), image, "png")
        sizes[fid] = (info.width, info.height)
        objects = read_label_file(label, width=info.width, height=info.height, strict=True)
        classes.update(o.object_class for o in objects)
        if fid == "000001":
            assert [o.occlusion for o in objects if o.object_class == "cyclist"] == [3]
        if fid == "000007":
            inverted = [o for o in objects if o.x1 == 780.37]
            assert [(o.object_class, o.x2, o.y1, o.y2) for o in inverted] == [
                ("dontcare", 781.17, 174.72, 175.52)]
    assert sizes["000000"] == (1224, 370)
    assert all(size == (1242, 375) for fid, size in sizes.items() if fid != "000000")
    assert Image.open(kitti_samples / "images" / "000007.png").mode == "P"
    assert classes == {"car", "pedestrian", "cyclist", "truck", "misc", "dontcare"}
