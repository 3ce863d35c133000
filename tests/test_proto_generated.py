"""The checked-in *_pb2.py files match their .proto schemas (regenerate: python -m tlt.proto.generate)."""

import shutil

import pytest

from tlt.proto import generate


def test_generated_files_are_up_to_date():
    stale = generate.stale_files()
    assert stale == [], f"stale generated files {stale}: run `python -m tlt.proto.generate`"
    assert generate.main(["--check"]) == 0


@pytest.fixture
def proto_copy(tmp_path, monkeypatch):
    """A copy of lib/tlt/proto in tmp_path, with generate.py pointed at it."""
    proto_dir = tmp_path / "lib" / "tlt" / "proto"
    proto_dir.mkdir(parents=True)
    for path in list(generate.PROTO_DIR.glob("*.proto")) + list(generate.PROTO_DIR.glob("*_pb2.py")):
        shutil.copy(path, proto_dir / path.name)
    monkeypatch.setattr(generate, "PROTO_DIR", proto_dir)
    monkeypatch.setattr(generate, "_LIB_DIR", tmp_path / "lib")
    return proto_dir


def test_check_reports_edited_schema_and_orphan_then_generate_fixes_them(proto_copy, capsys):
    schema = proto_copy / "cluster_params.proto"
    schema.write_text(schema.read_text().replace("uint32 image_width = 12;",
                                                 "uint32 image_width = 12;\n  uint32 image_depth = 13;"))
    (proto_copy / "removed_pb2.py").write_text("# schema deleted\n")
    before = (proto_copy / "detection_config_pb2.py").read_bytes()

    assert generate.stale_files() == [proto_copy / "cluster_params_pb2.py", proto_copy / "removed_pb2.py"]
    assert generate.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "stale: lib/tlt/proto/cluster_params_pb2.py" in err
    assert "stale: lib/tlt/proto/removed_pb2.py" in err
    assert b"image_depth" not in (proto_copy / "cluster_params_pb2.py").read_bytes()  # --check wrote nothing

    assert generate.generate() == [proto_copy / "cluster_params_pb2.py", proto_copy / "removed_pb2.py"]
    assert b"image_depth" in (proto_copy / "cluster_params_pb2.py").read_bytes()
    assert not (proto_copy / "removed_pb2.py").exists()
    assert (proto_copy / "detection_config_pb2.py").read_bytes() == before
    assert generate.stale_files() == []
