"""tlt-converter from the command line: engines on the CPU backend and its one-line errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from det_fixtures import run_main
from export_fixtures import CLS_DIMS, KEY, classifier_tlt, exported, random_batch
from tlt.cli.converter import main
from tlt.engines import load_engine


def _args(tmp_path, *extra):
    export = exported("cls-int8")
    return [export["output"], "-k", KEY, "-d", "3,32,32", "-o", "predictions/Softmax",
            "-e", tmp_path / "saved.engine", "-c", export["dir"] / "cal.bin", "-m", "4",
            "--backend", "onnxruntime", *extra]


def test_int8_engine_from_etlt_and_cache(tmp_path):
    code, stdout, stderr = run_main(main, *_args(tmp_path, "-t", "int8"))
    assert code == 0, stderr
    assert f"Built a int8 onnxruntime engine {tmp_path / 'saved.engine'}" in stdout
    side = json.loads((tmp_path / "saved.engine.json").read_text())
    assert side["precision"] == "int8" and side["backend"] == "onnxruntime"
    assert side["source"] == str(exported("cls-int8")["output"])
    _, model = classifier_tlt()
    batch = random_batch(4, CLS_DIMS)
    out = load_engine(tmp_path / "saved.engine", threads=1).run(batch)["predictions/Softmax"]
    assert out.shape == (4, 3) and np.allclose(out.sum(1), 1, atol=1e-3)
    assert np.abs(out - model.predict(batch, verbose=0)).max() < 0.1


def test_int8_float_tail_is_recorded_in_the_sidecar(tmp_path):
    """``residual`` keeps the last residual sum, the convolutions it adds and the head fp32,
    ``head`` the sum and the head, ``outputs`` only the node that makes the output (the Softmax);
    the default for a classifier (its head pools) is ``head``."""
    sides = {}
    for policy in ("residual", "head", "outputs"):
        folder = tmp_path / policy
        args = [str(a) for a in _args(folder, "-t", "int8", "--int8_float_tail", policy)]
        code, _, stderr = run_main(main, *args)
        assert code == 0, stderr
        sides[policy] = json.loads((folder / "saved.engine.json").read_text())["float_nodes"]
    default_dir = tmp_path / "default"
    assert run_main(main, *_args(default_dir, "-t", "int8"))[0] == 0
    assert json.loads((default_dir / "saved.engine.json").read_text())["float_nodes"] == \
        sides["head"]
    assert len(sides["outputs"]) == 1 and sides["outputs"][0] in sides["head"]
    assert set(sides["head"]) < set(sides["residual"])
    assert [n for n in sides["residual"] if n not in sides["head"]], sides
    assert run_main(main, *_args(tmp_path / "fp32"))[0] == 0
    assert json.loads((tmp_path / "fp32" / "saved.engine.json").read_text())["float_nodes"] == []


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("tlt-converter: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("change, message", [
    (("-k", "nope"), r"cannot decrypt: wrong key or the file is corrupt"),
    (("-d", "3,64,32"), r"-d 3,64,32 does not match the model: .*classifier\.etlt takes input_1 of "
                        r"N x 3 x 32 x 32 \(C,H,W = 3,32,32\); pass -d 3,32,32"),
    (("-o", "output_cov/Sigmoid,predictions/Softmax"),
     r"-o output_cov/Sigmoid: not an output of .*; its outputs are predictions/Softmax"),
    (("-i", "nhwc"), r"-i nhwc: input_1 of this export is NCHW \(N x 3 x 32 x 32\)"),
    (("-t", "fp16"), r"fp16 engines need TensorRT on a GPU"),
    (("-m", "0"), r"-m must be >= 1, got 0"),
])
def test_bad_flags_are_one_line(tmp_path, change, message):
    args = [str(a) for a in _args(tmp_path)]
    flag, value = change
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    code, _, stderr = run_main(main, *args)
    assert code != 0
    assert re.search(message, _error_line(stderr)), stderr
    assert not (tmp_path / "saved.engine").exists()


def test_int8_without_cache_is_one_line(tmp_path):
    args = [str(a) for a in _args(tmp_path, "-t", "int8")]
    args[args.index("-c") + 1] = str(tmp_path / "none.bin")
    code, _, stderr = run_main(main, *args)
    assert code != 0
    assert re.search(r"-t int8 needs the calibration cache written by tlt-export --data_type int8: "
                     r".*none\.bin does not exist", _error_line(stderr))


def test_cache_of_another_export_is_refused(tmp_path):
    export = exported("det")
    code, _, stderr = run_main(main, export["output"], "-d", "3,32,64", "-o",
                               "output_cov/Sigmoid,output_bbox/BiasAdd", "-t", "int8", "-c",
                               exported("cls-int8")["dir"] / "cal.bin", "-e",
                               tmp_path / "det.engine", "--backend", "onnxruntime")
    assert code != 0
    assert "the calibration cache names tensors this model does not have" in _error_line(stderr)
