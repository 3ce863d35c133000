"""``tlt-infer`` argument errors are one line before any model is loaded; ``-h`` shows defaults."""

import pytest
from PIL import Image

from det_fixtures import run_main
from tlt.cli import infer


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (32, 16), (128, 128, 128)).save(path)
    return path


def _lines(stderr: str) -> list[str]:
    return stderr.strip().splitlines()


def test_output_folder_that_is_an_existing_file_is_one_line(tmp_path, image):
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    code, stdout, stderr = run_main(infer.main, "detection", "-m", tmp_path / "absent.tlt",
                                    "-i", image, "-o", out, "-k")
    assert code == 1
    assert _lines(stderr) == [f"tlt-infer: error: {out}: cannot be the output folder (-o): it is an "
                              "existing file"]
    assert out.read_text() == "keep me" and stdout == ""


def test_output_folder_below_a_file_is_one_line(tmp_path, image):
    parent = tmp_path / "notes"
    parent.write_text("")
    code, _, stderr = run_main(infer.main, "detection", "-m", tmp_path / "absent.tlt",
                               "-i", image, "-o", parent / "run1", "-bo")
    assert code == 1
    assert _lines(stderr) == [f"tlt-infer: error: {parent / 'run1'}: cannot be the output folder "
                              f"(-o): its parent {parent} is an existing file"]


@pytest.mark.parametrize("task,flags,message", [
    ("detection", ["-bs", "0"], "-bs/--batch_size must be >= 1, got 0"),
    ("detection", ["-lw", "-3"], "-lw/--line_width must be >= 1, got -3"),
    ("classification", ["-b", "0"], "-b/--batch_size must be >= 1, got 0"),
])
def test_counts_below_one_are_rejected_not_taken_as_one(tmp_path, image, task, flags, message):
    where = ["-i", str(image), "-o", str(tmp_path / "out"), "-k"] if task == "detection" \
        else ["-i", str(image)]
    code, _, stderr = run_main(infer.main, task, "-m", tmp_path / "absent.tlt", *where, *flags)
    assert code == 1
    assert _lines(stderr) == [f"tlt-infer: error: {message}"]  # before the (absent) model is read
    assert not (tmp_path / "out").exists()


def test_library_rejects_a_zero_batch_too(tmp_path, image):
    from tlt.errors import DataError
    from tlt.inference.classification import infer_classification

    with pytest.raises(DataError, match=r"^--batch_size must be >= 1, got 0$"):
        infer_classification(str(tmp_path / "absent.tlt"), image=str(image), batch_size=0)


@pytest.mark.parametrize("task,expected", [
    ("detection", ["inference batch size (default: 1)", "(default: output_cov)",
                   "(default: output_bbox)", "output_cov/Sigmoid", "output_bbox/BiasAdd",
                   "overlay line width in pixels (default: 2)"]),
    ("classification", ["inference batch size (default: 1)", "(default: $TLT_KEY)"]),
])
def test_help_shows_defaults(task, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        infer.main([task, "-h"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for fragment in expected:
        assert fragment in text
    assert "(default: None)" not in text and "(default: False)" not in text
