"""The registry's split into one module per job keeps `tlt.io.registry` the public door: its
names are the modules' own objects, and the modules never import the facade (no cycle)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tlt.errors import RegistryError
from tlt.io import registry, registry_aliases, registry_files, registry_types


def test_public_names_are_the_modules_objects():
    assert registry.VersionInfo is registry_types.VersionInfo
    assert registry.FileInfo is registry_types.FileInfo
    assert registry.APPLICATIONS == {"classification": "Classification", "detection": "Detection"}
    assert registry.promote is registry_aliases.promote
    for name in registry.__all__:
        assert hasattr(registry, name), name


@pytest.mark.parametrize("module", ["registry_types", "registry_files", "registry_pull",
                                    "registry_alias_records", "registry_promotion",
                                    "registry_publish", "registry_aliases", "champion"])
def test_modules_do_not_import_the_facade_except_champion(module):
    code = (f"import sys; import tlt.io.{module}; "
            f"print('tlt.io.registry' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("True" if module == "champion" else "False")


def test_version_order_is_natural():
    versions = ["10", "2", "1.10", "1.9", "a"]
    assert sorted(versions, key=registry_types.version_key) == ["1.9", "1.10", "2", "10", "a"]


def test_collect_files_names_a_clash_and_a_missing_path(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "model.tlt").write_bytes(b"1")
    (tmp_path / "b" / "model.tlt").write_bytes(b"2")
    assert registry_files.collect_files(tmp_path / "a") == [(tmp_path / "a" / "model.tlt",
                                                             "model.tlt")]
    with pytest.raises(RegistryError, match="two files would both be stored as 'model.tlt'"):
        registry_files.collect_files([tmp_path / "a" / "model.tlt", tmp_path / "b" / "model.tlt"])
    with pytest.raises(RegistryError, match=f"cannot publish {tmp_path / 'c'}: no such file"):
        registry_files.collect_files([tmp_path / "c"])
