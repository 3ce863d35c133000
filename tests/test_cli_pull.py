"""tlt-pull: the guide's listing/download flags against a local registry, publish, errors."""

from __future__ import annotations

import re

import pytest

from tlt.cli.pull import main
from tlt.io.registry import Registry


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry with two models; TLT_REGISTRY unset so each test chooses how to name it."""
    monkeypatch.delenv("TLT_REGISTRY", raising=False)
    root = tmp_path / "reg"
    src = tmp_path / "src"
    src.mkdir()
    (src / "resnet18.tlt").write_bytes(b"x" * 2500)
    (src / "labels.txt").write_text("a\nb\n")
    reg = Registry(root)
    reg.publish("tlt_iva_classification_resnet18", "1", src, task="classification")
    reg.publish("tlt_iva_object_detection_resnet10", "1", src / "resnet18.tlt", task="detection")
    reg.publish("tlt_iva_object_detection_resnet10", "2", src / "resnet18.tlt")
    return root


def _table(out: str) -> list[list[str]]:
    """Rows of an aligned table (separator lines dropped), split on 2+ spaces."""
    return [re.split(r"\s{2,}", line) for line in out.splitlines() if not line.startswith("-")]


@pytest.mark.parametrize("flags", [["--list", "models"], ["-lm"], ["--list_models"]])
def test_list_models_table(registry, capsys, flags):
    assert main(["-r", str(registry), *flags]) == 0
    rows = _table(capsys.readouterr().out)
    assert rows[0] == ["Name", "Org/Team", "Latest Version", "Application", "Framework",
                       "Precision", "Last Modified"]
    assert [r[:6] for r in rows[1:]] == [
        ["tlt_iva_classification_resnet18", "-", "1", "Classification", "TLT", "FP32"],
        ["tlt_iva_object_detection_resnet10", "-", "2", "Detection", "TLT", "FP32"]]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", r[6]) for r in rows[1:])


def test_registry_from_env_and_ngc_flags_ignored(registry, capsys, monkeypatch):
    monkeypatch.setenv("TLT_REGISTRY", str(registry))
    assert main(["-k", "APIKEY", "-lm", "-o", "nvtltea", "-t", "iva"]) == 0
    captured = capsys.readouterr()
    assert len(_table(captured.out)) == 3
    notes = [line for line in captured.err.splitlines() if "NGC options" in line]
    assert len(notes) == 1 and "are ignored" in notes[0]


def test_list_versions(registry, capsys):
    assert main(["-r", str(registry), "--list_versions", "-m",
                 "tlt_iva_object_detection_resnet10"]) == 0
    rows = _table(capsys.readouterr().out)
    assert rows[0] == ["Version", "Files", "Size", "Last Modified", "Aliases"]
    assert [r[:3] + r[4:] for r in rows[1:]] == [["2", "1", "2.50 KB", "-"],
                                                  ["1", "1", "2.50 KB", "-"]]


def test_download_like_the_guide(registry, tmp_path, capsys):
    code = main(["-r", str(registry), "-v", "1", "-m", "tlt_iva_classification_resnet18",
                 "-d", str(tmp_path / "models")])
    assert code == 0
    out = capsys.readouterr().out
    dest = tmp_path / "models" / "tlt_iva_classification_resnet18_v1"
    assert re.search(r"^Downloaded 2.50 KB in \d+\.\d\ds, Download speed: .+/s$", out, re.M)
    assert f"Downloaded local path: {dest}\n" in out
    assert "Total files downloaded: 2\n" in out
    assert "Finished downloading tlt_iva_classification_resnet18" in out
    assert (dest / "resnet18.tlt").read_bytes() == b"x" * 2500
    assert (dest / "labels.txt").read_text() == "a\nb\n"


def test_download_latest(registry, tmp_path, capsys):
    assert main(["-r", str(registry), "-m", "tlt_iva_object_detection_resnet10", "-v", "latest",
                 "-d", str(tmp_path)]) == 0
    assert (tmp_path / "tlt_iva_object_detection_resnet10_v2" / "resnet18.tlt").is_file()


def test_publish_then_pull(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TLT_REGISTRY", raising=False)
    model = tmp_path / "final_model.tlt"
    model.write_bytes(b"trained")
    root = tmp_path / "new_registry"
    assert main(["-r", str(root), "--publish", str(model), "-m", "mine", "-v", "3",
                 "--task", "detection", "--description", "retrained"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"Published mine version 3 (1 file, 7 B) to {root}"
    [info] = Registry(root).list_versions("mine")
    assert Registry(root).list_models()[0].application == "Detection"
    assert info.files[0].path == "final_model.tlt"

    assert main(["-r", str(root), "--publish", str(model), "-m", "mine", "-v", "3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tlt-pull: error: version 3 of 'mine' already exists in registry {root}; "
                   "versions are immutable: publish a new version, or pass overwrite=True "
                   "(tlt-pull --overwrite) to replace it"]
    assert main(["-r", str(root), "--publish", str(model), "-m", "mine", "-v", "3",
                 "--overwrite"]) == 0


@pytest.mark.parametrize("argv, code, message", [
    (["-m", "x", "-v", "1"], 1,
     "no registry given: pass -r/--registry URI or set TLT_REGISTRY"),
    (["-r", "{reg}", "-m", "tlt_iva_classification_resnet18"], 2,
     "--version is mandatory to download; use --list_versions -m "
     "tlt_iva_classification_resnet18 to see the versions (or --alias production)"),
    (["-r", "{reg}"], 2,
     "nothing to do: pass --list models, --list_versions -m NAME, -m NAME -v VERSION, "
     "-m NAME --alias ALIAS, --publish PATH -m NAME -v VERSION, --promote VERSION -m NAME, "
     "or --history -m NAME"),
    (["-r", "{reg}", "--list_versions"], 2, "--list_versions needs -m/--model_name"),
    (["-r", "{reg}", "--promote", "1"], 2, "--promote needs -m/--model_name"),
    (["-r", "{reg}", "--history"], 2, "--history needs -m/--model_name"),
    (["-r", "{reg}", "-lm", "--list_versions", "-m", "x"], 2,
     "choose one of --list models, --list_versions, --publish, --promote and --history"),
    (["-r", "{reg}", "-m", "tlt_iva_object_detection_resnet10", "-v", "1", "--alias",
      "production"], 2, "choose -v/--version or --alias to download, not both"),
    (["-r", "{reg}", "-m", "tlt_iva_object_detection_resnet10", "--alias", "production"], 1,
     "registry {reg} has no production model 'tlt_iva_object_detection_resnet10'; run the "
     "retraining pipeline once or promote a version with tlt-pull --promote"),
    (["-r", "{reg}", "-m", "tlt_iva_object_detection_resnet10", "--promote", "9"], 1,
     "version 9 of 'tlt_iva_object_detection_resnet10' not found; available: 1, 2"),
    (["-r", "{reg}", "--publish", "f.tlt", "-m", "x"], 2,
     "--publish needs -m/--model_name and -v/--version"),
    (["-r", "{reg}", "-m", "nope", "-v", "1"], 1,
     "model 'nope' not found in registry {reg}; available: tlt_iva_classification_resnet18, "
     "tlt_iva_object_detection_resnet10"),
    (["-r", "{reg}", "-m", "tlt_iva_object_detection_resnet10", "-v", "7"], 1,
     "version 7 of 'tlt_iva_object_detection_resnet10' not found; available: 1, 2"),
    (["-r", "{tmp}", "-lm"], 1, "registry {tmp} has no index.json (is this a registry?)"),
    (["-r", "{reg}", "-m", "tlt_iva_object_detection_resnet10", "-v", "1", "-d",
      "{tmp}/labels.txt"], 2, "-d {tmp}/labels.txt is a file, not a folder"),
    (["-r", "{reg}", "-m", "tlt_iva_object_detection_resnet10", "-v", "1", "-d",
      "{tmp}/labels.txt/deeper"], 2,
     "-d {tmp}/labels.txt/deeper: {tmp}/labels.txt is a file, not a folder"),
])
def test_errors_are_one_line(registry, tmp_path, capsys, argv, code, message):
    subst = {"reg": str(registry), "tmp": str(tmp_path / "src")}
    argv = [a.format(**subst) for a in argv]
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [f"tlt-pull: error: {message.format(**subst)}"]


def test_help_and_bad_flag(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--publish FILE_OR_DIR" in out and "this project's addition" in out
    assert "--promote VERSION" in out and "--history" in out
    flat = " ".join(out.split())
    assert "(default: current folder)" in flat and "(default: production)" in flat
    assert "  tlt-pull -r gs://bucket/models --history -m resnet18_cls\n" in out  # epilog kept
    assert main(["--no-such-flag"]) == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_promote_list_pull_by_alias_and_history(registry, tmp_path, capsys, monkeypatch):
    name = "tlt_iva_object_detection_resnet10"
    monkeypatch.setenv("TLT_PROMOTED_BY", "alice")
    assert main(["-r", str(registry), "-m", name, "--promote", "1"]) == 0
    assert capsys.readouterr().out == (f"Promoted {name} version 1 to production in {registry} "
                                       f"(was unset)\n")
    assert main(["-r", str(registry), "-m", name, "--promote", "2"]) == 0
    assert capsys.readouterr().out.endswith("(was version 1)\n")
    assert main(["-r", str(registry), "-m", name, "--promote", "2"]) == 0
    assert "already is production" in capsys.readouterr().out
    assert main(["-r", str(registry), "-m", name, "--promote", "1", "--alias", "staging"]) == 0
    capsys.readouterr()

    assert main(["-r", str(registry), "--list_versions", "-m", name]) == 0
    rows = _table(capsys.readouterr().out)
    assert [(r[0], r[4]) for r in rows[1:]] == [("2", "production"), ("1", "staging")]

    assert main(["-r", str(registry), "-m", name, "--alias", "production", "-d",
                 str(tmp_path / "models")]) == 0
    out = capsys.readouterr().out
    dest = tmp_path / "models" / f"{name}_v2"
    assert f"Downloaded local path: {dest}\n" in out
    assert (dest / "resnet18.tlt").read_bytes() == b"x" * 2500

    assert main(["-r", str(registry), "--history", "-m", name]) == 0
    rows = _table(capsys.readouterr().out)
    assert rows[0] == ["#", "Promoted", "Who", "From", "To", "Metric", "Margin", "Reason"]
    assert [r[:1] + r[2:] for r in rows[1:]] == [
        ["1", "alice", "-", "1", "-", "-",
         "promoted by hand (no champion/challenger decision recorded)"],
        ["2", "alice", "1", "2", "-", "-",
         "promoted by hand (no champion/challenger decision recorded)"]]
    assert main(["-r", str(registry), "--history", "-m", name, "--alias", "canary"]) == 0
    assert capsys.readouterr().out == (f"canary alias of '{name}' has never been set in "
                                       f"registry {registry}\n")


def test_history_shows_the_decision(registry, capsys):
    from tlt.gates.promotion import decide_promotion
    from tlt.io.registry import promote

    name = "tlt_iva_object_detection_resnet10"
    reg = Registry(registry)
    promote(reg, name, "1", decision=decide_promotion(0.5), who="run-1")
    promote(reg, name, "2", decision=decide_promotion(0.62, 0.5, margin=0.02), who="run-2")
    assert main(["-r", str(registry), "--history", "-m", name]) == 0
    rows = _table(capsys.readouterr().out)
    assert [r[2:7] for r in rows[1:]] == [["run-1", "-", "1", "mAP - -> 0.5", "0.01"],
                                          ["run-2", "1", "2", "mAP 0.5 -> 0.62", "0.02"]]
    assert rows[2][7].startswith("challenger mAP 0.62")
