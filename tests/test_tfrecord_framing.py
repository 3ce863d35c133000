"""TFRecord framing checks: a file that is not a TFRecord is named, never read as a giant record."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import google_crc32c
import pytest

from tlt.data.synthetic import make_detection_dataset
from tlt.data.tfrecord import TFRecordWriter, check_tfrecord_file, read_records
from tlt.errors import DataError
from tlt.stages.convert import run


def _masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("framing")
    make_detection_dataset(base / "data", num_frames=4, width=64, height=64, seed=5)
    from tlt import spec as spec_lib

    spec = spec_lib.loads(f'kitti_config {{ root_directory_path: "{base / "data"}" '
                          'num_shards: 1 val_split: 50 }', "dataset_export")
    run(spec, base / "out", output_name="kitti", num_workers=1, progress=False)
    return base / "out"


@pytest.mark.parametrize("verify", [True, False])
def test_metadata_json_is_named_not_read(converted, verify):
    meta = converted / "metadata.json"
    with pytest.raises(DataError) as err:
        list(read_records(meta, verify=verify))
    assert str(err.value) == (f"{meta}: not a TFRecord file (the first record's length fails its "
                              "masked CRC32C); check that the tfrecords pattern matches only "
                              "shard files")


@pytest.mark.parametrize("verify", [True, False])
def test_random_binary_file_is_named(tmp_path, verify):
    path = tmp_path / "noise.bin"
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(DataError, match=rf"^{path}: not a TFRecord file"):
        list(read_records(path, verify=verify))
    with pytest.raises(DataError, match=rf"^{path}: not a TFRecord file"):
        check_tfrecord_file(path)


def test_tiny_file_is_not_a_tfrecord(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello")
    with pytest.raises(DataError, match=r"notes.txt: not a TFRecord file \(5 bytes, shorter than "
                                        r"a record header\)"):
        list(read_records(path, verify=False))


def test_huge_length_with_valid_header_crc_is_truncation_not_memory_error(tmp_path):
    path = tmp_path / "forged"
    length = struct.pack("<Q", 1 << 40)  # a terabyte: reading it would exhaust memory
    path.write_bytes(length + struct.pack("<I", _masked(google_crc32c.value(length))) + b"x" * 8)
    with pytest.raises(DataError, match=r"forged: record 0 is truncated, expected 1099511627776 "
                                        r"bytes and a CRC, 8 left"):
        list(read_records(path, verify=False))
    with pytest.raises(DataError, match=r"forged: record 0 is truncated"):
        check_tfrecord_file(path)


def test_shards_still_read_and_check(converted, tmp_path):
    shards = sorted(converted.glob("kitti-fold-*"))
    assert len(shards) == 2
    assert sum(len(list(read_records(s, verify=False))) for s in shards) == 4
    for shard in shards:
        check_tfrecord_file(shard)
    empty = tmp_path / "empty-shard"
    TFRecordWriter(empty).close()
    check_tfrecord_file(empty)
    assert list(read_records(empty)) == []


def test_corrupt_second_header_is_reported_with_its_index(tmp_path):
    path = tmp_path / "two"
    with TFRecordWriter(path) as writer:
        writer.write(b"first")
        writer.write(b"second")
    data = bytearray(path.read_bytes())
    data[12 + 5 + 4 + 9] ^= 0xFF  # a byte of record 1's length CRC
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"two: record 1 has a corrupt length header"):
        list(read_records(path, verify=False))
