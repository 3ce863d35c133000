"""A hostile or broken registry: every bad catalogue is one RegistryError line; pull never
writes outside its destination; registries written by older releases stay readable."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from tlt.cli.pull import main as pull_main
from tlt.errors import RegistryError
from tlt.io.registry import Registry

SHA = hashlib.sha256(b"w").hexdigest()


def _entry(**changes) -> dict:
    entry = {"location": "m/1", "created": "2024-01-01T00:00:00+00:00", "size": 1,
             "files": [{"path": "model.tlt", "size": 1, "sha256": SHA}], "metadata": {}}
    entry.update(changes)
    return entry


def _index(models) -> dict:
    return {"format": "tlt-model-registry", "format_version": 1, "models": models}


def _write_index(root, index) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.json").write_text(json.dumps(index))


def _snapshot(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


HOSTILE = {
    "version escapes": (_index({"m": {"versions": {"1/../../../x": _entry()}}}),
                        "models['m'].versions['1/../../../x']: invalid version name"),
    "model name escapes": (_index({"../m": {"versions": {"1": _entry()}}}),
                           "models['../m']: invalid model name"),
    "empty model name": (_index({"": {"versions": {"1": _entry()}}}),
                         "models['']: invalid model name"),
    "empty version": (_index({"m": {"versions": {"": _entry()}}}),
                      "models['m'].versions['']: invalid version name"),
    "location up": (_index({"m": {"versions": {"1": _entry(location="../outside")}}}),
                    "models['m'].versions['1']: unsafe location '../outside': expected a "
                    "folder of this model, 'm/<label>'"),
    "location absolute": (_index({"m": {"versions": {"1": _entry(location="/etc")}}}),
                          "unsafe location '/etc'"),
    "location of another model": (_index({"m": {"versions": {"1": _entry(location="n/1")}}}),
                                  "unsafe location 'n/1'"),
    "location backslash": (_index({"m": {"versions": {"1": _entry(location="m\\..\\..")}}}),
                           "unsafe location 'm\\\\..\\\\..'"),
    "file backslash": (_index({"m": {"versions": {"1": _entry(files=[
        {"path": "..\\x", "size": 1, "sha256": SHA}])}}}),
        "files[0]: unsafe file path '..\\\\x'"),
    "file absolute": (_index({"m": {"versions": {"1": _entry(files=[
        {"path": "/tmp/x", "size": 1, "sha256": SHA}])}}}), "files[0]: unsafe file path '/tmp/x'"),
    "file empty": (_index({"m": {"versions": {"1": _entry(files=[
        {"path": "", "size": 1, "sha256": SHA}])}}}), "files[0]: unsafe file path ''"),
    "format_version string": ({"format_version": "2", "models": {}},
                              "format_version must be a whole number, got '2'"),
    "format_version newer": ({"format_version": 9, "models": {}},
                             "has format_version 9; this release reads 1"),
    "size string": (_index({"m": {"versions": {"1": _entry(size="abc")}}}),
                    "models['m'].versions['1']: size must be a whole number >= 0, got 'abc'"),
    "file size string": (_index({"m": {"versions": {"1": _entry(files=[
        {"path": "a", "size": "abc", "sha256": SHA}])}}}),
        "files[0].size must be a whole number >= 0, got 'abc'"),
    "bad sha256": (_index({"m": {"versions": {"1": _entry(files=[
        {"path": "a", "size": 1, "sha256": "0"}])}}}),
        "files[0].sha256 must be 64 lowercase hex digits, got '0'"),
    "version entry is a string": (_index({"m": {"versions": {"1": "m/1"}}}),
                                  "models['m'].versions['1'] must be an object, got str"),
    "files not a list": (_index({"m": {"versions": {"1": _entry(files="model.tlt")}}}),
                         "files must be a list, got str"),
    "metadata a list": (_index({"m": {"versions": {"1": _entry(metadata=[1])}}}),
                        "metadata must be an object, got list"),
    "top level a list": ([{"models": {}}], "is malformed: expected an object with a 'models' "
                                           "object"),
    "models a list": ({"models": []}, "is malformed: expected an object with a 'models' object"),
    "versions a list": (_index({"m": {"versions": []}}),
                        "models['m'] is malformed: expected an object with a 'versions' object"),
    "application a number": (_index({"m": {"application": 3, "versions": {}}}),
                             "models['m']: application must be a string, got 3"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_index_is_one_clear_error(tmp_path, case):
    index, expected = HOSTILE[case]
    root = tmp_path / "reg"
    _write_index(root, index)
    before = _snapshot(tmp_path)
    for call in (lambda reg: reg.list_models(), lambda reg: reg.pull("m", "1", tmp_path / "d")):
        with pytest.raises(RegistryError) as err:
            call(Registry(root))
        message = str(err.value)
        assert message.startswith(f"{root / 'index.json'}") and expected in message
        assert "\n" not in message
    assert _snapshot(tmp_path) == before  # nothing written anywhere


def test_cli_prints_one_line_for_a_hostile_index(tmp_path, capsys):
    root = tmp_path / "reg"
    _write_index(root, HOSTILE["version escapes"][0])
    assert pull_main(["-r", str(root), "-m", "m", "-v", "1/../../../x", "-d",
                      str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tlt-pull: error: {root / 'index.json'}: models['m'].versions"
                   f"['1/../../../x']: invalid version name: use letters, digits, '.', '_' and "
                   f"'-' (at most 128, not starting with '.', '_' or '-')"]
    assert not (tmp_path / "x").exists() and not (tmp_path / "d").exists()


def test_legacy_location_outside_root_is_not_copied(tmp_path):
    """A location such as ``../outside`` once copied files from beside a local registry."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "model.tlt").write_bytes(b"w")
    root = tmp_path / "reg"
    _write_index(root, HOSTILE["location up"][0])
    with pytest.raises(RegistryError, match="unsafe location '../outside'"):
        Registry(root).pull("m", "1", tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_pull_refuses_a_symlink_leading_out_of_dest(tmp_path):
    root = tmp_path / "reg"
    src = tmp_path / "src" / "sub"
    src.mkdir(parents=True)
    (src / "model.tlt").write_bytes(b"w")
    Registry(root).publish("m", "1", tmp_path / "src")
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, dest / "sub")
    with pytest.raises(RegistryError) as err:
        Registry(root).pull("m", "1", dest)
    assert str(err.value) == (f"m:1: file 'sub/model.tlt' would be written to "
                              f"{elsewhere / 'model.tlt'}, outside the destination {dest}")
    assert list(elsewhere.iterdir()) == []


def test_pull_into_a_file_is_one_line(tmp_path):
    root = tmp_path / "reg"
    (tmp_path / "w.tlt").write_bytes(b"w")
    Registry(root).publish("m", "1", tmp_path / "w.tlt")
    with pytest.raises(RegistryError) as err:
        Registry(root).pull("m", "1", tmp_path / "w.tlt" / "deeper")
    assert str(err.value) == (f"cannot download into {tmp_path / 'w.tlt' / 'deeper'}: "
                              f"{tmp_path / 'w.tlt'} is a file, not a folder")


@pytest.mark.parametrize("content, expected", [
    ("{not json", "is not valid JSON"),
    (json.dumps({"format": "tlt-model-registry-version", "format_version": 1, "name": "other",
                 "version": "1", "model": {}, "entry": _entry()}),
     "names 'other' version '1', but its key says 'm' '1'"),
    (json.dumps({"format": "tlt-model-registry-version", "format_version": 1, "name": "m",
                 "version": "1", "model": {}, "entry": _entry(location="../../x")}),
     "unsafe location '../../x'"),
    (json.dumps(["m"]), "is malformed: expected a 'tlt-model-registry-version' object"),
])
def test_hostile_entry_object(tmp_path, content, expected):
    root = tmp_path / "reg"
    (root / "_versions" / "m").mkdir(parents=True)
    (root / "_versions" / "m" / "1.json").write_text(content)
    with pytest.raises(RegistryError) as err:
        Registry(root).list_versions("m")
    assert str(err.value).startswith(str(root / "_versions" / "m" / "1.json"))
    assert expected in str(err.value)


def test_unexpected_object_among_entries(tmp_path):
    root = tmp_path / "reg"
    (root / "_versions" / "m" / "1").mkdir(parents=True)
    (root / "_versions" / "m" / "1" / "x.json").write_text("{}")
    with pytest.raises(RegistryError, match=r"x.json: unexpected object in the registry's "
                                            r"_versions/ folder"):
        Registry(root).list_models()


def test_registry_of_an_older_release_stays_usable(tmp_path):
    """index.json only (location ``m/1``): list, pull, publish another version, refuse v1."""
    root = tmp_path / "reg"
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "1" / "model.tlt").write_bytes(b"w")
    _write_index(root, _index({"m": {"application": "Detection", "framework": "TLT",
                                     "precision": "FP32", "description": "old",
                                     "versions": {"1": _entry()}}}))
    reg = Registry(root)
    assert reg.pull("m", "1", tmp_path / "d")[0].read_bytes() == b"w"
    (tmp_path / "v2.tlt").write_bytes(b"v2")
    reg.publish("m", "2", tmp_path / "v2.tlt")
    [model] = reg.list_models()
    assert (model.versions, model.application, model.description) == (
        ("1", "2"), "Detection", "old")
    with pytest.raises(RegistryError, match="version 1 of 'm' already exists"):
        reg.publish("m", "1", tmp_path / "v2.tlt")
    assert (root / "m" / "1" / "model.tlt").exists()  # the legacy folder is not an orphan
    cache = json.loads((root / "index.json").read_text())
    assert sorted(cache["models"]["m"]["versions"]) == ["1", "2"]  # older readers see both
