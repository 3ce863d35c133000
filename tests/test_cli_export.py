"""tlt-export from the command line: the files it writes and its one-line errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from det_fixtures import run_main
from export_fixtures import CLS_DIMS, KEY, classifier_tlt, random_batch
from tlt.cli.export import main
from tlt.io import exportfile, modelfile


def test_etlt_is_encrypted_onnx_with_metadata(tmp_path):
    path, model = classifier_tlt()
    out = tmp_path / "cls.etlt"
    code, stdout, stderr = run_main(main, str(path), "-k", KEY, "-o", out)
    assert code == 0, stderr
    assert f"Exported {path} to {out} (input input_1 N x 3 x 32 x 32, outputs predictions/Softmax)" \
        in stdout
    assert "Output node(s): ['predictions/Softmax']" in stderr  # TLT's log line
    assert modelfile.read_model_header(out)["encrypted"] is True
    export = exportfile.load_export(out, KEY)
    meta = export.metadata
    assert meta["payload_format"] == "onnx" and meta["task"] == "classification"
    assert meta["classes"] == ["circle", "square", "triangle"]
    assert meta["input_dims"] == [3, 32, 32] and meta["input_name"] == "input_1"
    assert meta["output_names"] == ["predictions/Softmax"] and meta["precision"] == "fp32"
    assert meta["preprocessing"]["color"] == "rgb" and meta["preprocessing"]["offset"] == 127.5
    assert meta["source_digest"] == exportfile.file_digest(path.read_bytes())
    session = ort.InferenceSession(export.onnx_bytes, providers=["CPUExecutionProvider"])
    batch = random_batch(2, CLS_DIMS)
    np.testing.assert_allclose(session.run(None, {"input_1": batch})[0],
                               model.predict(batch, verbose=0), atol=1e-4, rtol=0)


def test_plain_onnx_carries_its_metadata_in_the_graph(tmp_path):
    path, _ = classifier_tlt(key=None)
    out = tmp_path / "cls.onnx"
    code, _, stderr = run_main(main, str(path), "-o", out, "--input_dims", "3,32,32")
    assert code == 0, stderr
    graph = onnx.load(out)
    onnx.checker.check_model(graph)
    props = {p.key: p.value for p in graph.metadata_props}
    assert '"task": "classification"' in props["tlt_export"]
    assert exportfile.load_export(out).metadata["classes"] == ["circle", "square", "triangle"]


@pytest.mark.parametrize("args, message", [
    (["-k", "wrong-key"], r"cannot decrypt: wrong key or the file is corrupt"),
    (["-k", KEY, "--input_dims", "3,64,64"],
     r"--input_dims 3,64,64 does not match the model: .* takes input_1 of N x 3 x 32 x 32 "
     r"\(C,H,W = 3,32,32\)"),
    (["-k", KEY, "--input_dims", "3,x"], r"--input_dims '3,x': expected comma-separated positive"),
    (["-k", KEY, "--outputs", "output_cov/Sigmoid"],
     r"--outputs output_cov/Sigmoid: not an output of this model; its outputs are "
     r"predictions/Softmax"),
    (["-k", KEY, "--data_type", "int8", "--cal_cache_file", "missing.bin"],
     r"--data_type int8 needs calibration images \(--cal_data_file IMAGE_DIR\) or an existing "
     r"calibration cache"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    path, _ = classifier_tlt()
    code, _, stderr = run_main(main, str(path), "-o", tmp_path / "x.etlt", *args)
    assert code != 0
    lines = [line for line in stderr.splitlines() if line.startswith("tlt-export: error:")]
    assert len(lines) == 1, stderr
    import re

    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "x.etlt").exists()


def test_etlt_without_key_asks_for_it(tmp_path):
    path, _ = classifier_tlt(key=None)
    code, _, stderr = run_main(main, str(path), "-o", tmp_path / "x.etlt")
    assert code != 0
    assert "an .etlt export is encrypted with the key: give -k or TLT_KEY, or name the output " \
           "*.onnx" in stderr
