"""No spec field is silently ignored: a field that cannot take effect is one warning at load time
(logger ``tlt.spec``) naming file:line, the field and why."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from tlt import spec
from tlt.errors import SpecError
from tlt.spec import ignored

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "specs"


@pytest.fixture
def warnings_of(caplog):
    """``warnings_of(text, kind, path)`` -> the tlt.spec warning lines logged while loading it."""
    def load(text, kind, path="s.txt", **kwargs):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tlt.spec"):
            spec.loads(text, kind, path=path, **kwargs)
        return [r.getMessage() for r in caplog.records if r.name == "tlt.spec"]
    return load


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(ignored, "_gpu_check", lambda: False)


def test_3d_folders_of_the_convert_spec_are_named(warnings_of):
    text = ('kitti_config {\n  root_directory_path: "/d"\n  point_clouds_dir: "velodyne"\n'
            '  calibrations_dir: "calib"\n}\n')
    assert warnings_of(text, "dataset_export", "e.txt") == [
        "e.txt:3: kitti_config.point_clouds_dir is not read: 2D detection reads only the images and "
        "the KITTI labels",
        "e.txt:4: kitti_config.calibrations_dir is not read: 2D detection reads only the images and "
        "the KITTI labels"]


def test_importance_weights_of_the_guide_spec_is_one_warning(warnings_of, no_gpu):
    path = EXAMPLES / "detection_resnet18.txt"
    text = path.read_text()
    line = text.splitlines().index("  importance_weights {") + 1
    assert warnings_of(text, "detection", str(path)) == [
        f"{path}:{line}: evaluation_config.importance_weights is not read: KITTI labels carry no "
        "camera, CVIP or in-path attributes, so detection AP is unweighted"]


def test_float16_without_a_gpu_is_named_with_its_line(warnings_of, no_gpu):
    text = "model_config {\n  training_precision {\n    backend_floatx: FLOAT16\n  }\n}\n"
    assert warnings_of(text, "detection") == [
        "s.txt:3: model_config.training_precision.backend_floatx is FLOAT16, which cannot take "
        "effect: mixed precision needs a GPU and none is visible, so training runs in FLOAT32"]


def test_float16_with_a_gpu_is_silent(warnings_of, monkeypatch):
    monkeypatch.setattr(ignored, "_gpu_check", lambda: True)
    text = ("model_config { training_precision { backend_floatx: FLOAT16 } }\n"
            "training_config { cost_scaling { enabled: true } }\n")
    assert warnings_of(text, "detection") == []


def test_cost_scaling_with_float32_has_no_effect(warnings_of, no_gpu):
    text = "training_config:\n  cost_scaling:\n    enabled: true\n    initial_exponent: 15\n"
    assert warnings_of(text, "detection", "d.yaml") == [
        "d.yaml:3: training_config.cost_scaling.enabled has no effect: loss scaling applies only "
        "with model_config.training_precision.backend_floatx: FLOAT16"]


def test_unread_classification_eval_config_fields(warnings_of):
    text = ('eval_config {\n  eval_dataset_path: "val"\n  model_path: "m.tlt"\n  batch_size: 4\n'
            "  top_k: 2\n  n_workers: 1\n}\n")
    found = warnings_of(text, "classification", "c.txt")
    assert [w.split(" is not read: ")[0] for w in found] == [
        "c.txt:2: eval_config.eval_dataset_path", "c.txt:3: eval_config.model_path",
        "c.txt:4: eval_config.batch_size", "c.txt:6: eval_config.n_workers"]
    assert "takes the model as -pm" in found[1]


def test_defaults_and_read_fields_are_silent(warnings_of, no_gpu):
    assert warnings_of((EXAMPLES / "detection_tiny.txt").read_text(), "detection") == []
    assert warnings_of("eval_config { top_k: 3 }", "classification") == []  # top_k is read
    assert warnings_of('kitti_config { root_directory_path: "/d" }', "dataset_export") == []


def test_warn_false_and_errors_first(warnings_of, no_gpu):
    text = "model_config { training_precision { backend_floatx: FLOAT16 } }"
    assert warnings_of(text, "detection", warn=False) == []
    with pytest.raises(SpecError):  # an invalid spec is an error, and nothing is warned about
        warnings_of(text + "\ntraining_config { num_epochs: 0 }", "detection")


def test_warnings_are_logged_never_printed(warnings_of, capsys, monkeypatch):
    root = logging.getLogger()  # keep only pytest's capturing handlers: no stream writes but ours
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers
                                           if type(h).__module__ == "_pytest.logging"])
    assert len(warnings_of('kitti_config { root_directory_path: "/d" point_clouds_dir: "v" }',
                           "dataset_export")) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


def test_gpu_check_is_cheap_and_honours_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    if "tensorflow" not in sys.modules:
        assert ignored.gpu_visible() is False
    code = ("import sys\nfrom tlt import spec\n"
            "spec.loads('model_config { training_precision { backend_floatx: FLOAT16 } }', 'detection')\n"
            "print('tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # loading a spec never pays TensorFlow's import
    assert "backend_floatx is FLOAT16" in done.stderr  # logging's last-resort handler shows it
