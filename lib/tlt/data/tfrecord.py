"""TFRecord files of detection frames: feature keys, writing, reading and parsing.

One ``tf.train.Example`` per frame holds the encoded image bytes (so training can stream shards
from object storage), its format and size, the frame id and every KITTI label field, under TLT's
key names (``frame/*``, ``target/*``).

Writing does not use TensorFlow: the Example protobuf and the TFRecord framing (length, masked
CRC32C) are encoded here. Measured on 960x544 JPEG frames, building a ``tf.train.Example`` and
serialising it cost more than reading the image, and importing TensorFlow in each worker process
adds seconds; the hand encoding also lets the image bytes go to the file without being copied into
a serialised message. `parse_example` (TensorFlow) reads the records back, as training does.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Any, BinaryIO, Iterator, Sequence

import google_crc32c

from tlt.errors import DataError

__all__ = [
    "FRAME_KEYS",
    "TARGET_FLOAT_ATTRS",
    "TARGET_FLOAT_KEYS",
    "TARGET_KEYS",
    "encode_example",
    "TFRecordWriter",
    "read_records",
    "check_tfrecord_file",
    "decode_example",
    "feature_spec",
    "parse_example",
]

# Frame-level features: one value each (frame/encoded holds the file's bytes unchanged).
FRAME_KEYS = ("frame/id", "frame/width", "frame/height", "frame/format", "frame/encoded")
# Per-object float features in KITTI field order -> the KittiObject attribute holding the value.
TARGET_FLOAT_ATTRS = {
    "target/truncation": "truncation", "target/observation_angle": "observation_angle",
    "target/coordinates_x1": "x1", "target/coordinates_y1": "y1",
    "target/coordinates_x2": "x2", "target/coordinates_y2": "y2",
    "target/world_bbox_h": "world_bbox_h", "target/world_bbox_w": "world_bbox_w",
    "target/world_bbox_l": "world_bbox_l", "target/world_bbox_x": "world_bbox_x",
    "target/world_bbox_y": "world_bbox_y", "target/world_bbox_z": "world_bbox_z",
    "target/world_bbox_rot_y": "world_bbox_rot_y",
}
TARGET_FLOAT_KEYS = tuple(TARGET_FLOAT_ATTRS)
# Every per-object feature; target/score is written only when the labels carry scores.
TARGET_KEYS = ("target/object_class", "target/occlusion") + TARGET_FLOAT_KEYS + ("target/score",)

_MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _varint_slow(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negatives are 10-byte two's complement varints
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths below 2**14 (every field but the image) are looked up instead of computed: encoding
# was the largest cost of a conversion before this table.
_SMALL = [_varint_slow(v) for v in range(1 << 14)]


def _varint(value: int) -> bytes:
    return _SMALL[value] if 0 <= value < 16384 else _varint_slow(value)


def _len_field(tag: int, payload_len: int) -> bytes:
    return bytes((tag,)) + _varint(payload_len)


def _key_head(key: str) -> bytes:
    """Start of a map entry: the key field, then the tag of the Feature value."""
    key_b = key.encode("utf-8")
    return b"\x0a" + _varint(len(key_b)) + key_b + b"\x12"


_KEY_HEADS = {key: _key_head(key) for key in FRAME_KEYS + TARGET_KEYS}


def _feature_entry(key: str, feature: bytes) -> bytes:
    """A map<string, Feature> entry of Features, with its field-1 header."""
    head = _KEY_HEADS.get(key) or _key_head(key)
    size = _varint(len(feature))
    return b"\x0a" + _varint(len(head) + len(size) + len(feature)) + head + size + feature


def _bytes_feature(values: Sequence[bytes]) -> bytes:
    payload = b"".join([b"\x0a" + _varint(len(v)) + v for v in values])
    return b"\x0a" + _varint(len(payload)) + payload


def _float_feature(values: Sequence[float]) -> bytes:
    if not values:
        return b"\x12\x00"
    n = 4 * len(values)
    packed = struct.pack(f"<{len(values)}f", *values)
    inner = b"\x0a" + _varint(n) + packed
    return b"\x12" + _varint(len(inner)) + inner


def _int64_feature(values: Sequence[int]) -> bytes:
    if not values:
        return b"\x1a\x00"
    packed = b"".join([_varint(v) for v in values])
    inner = b"\x0a" + _varint(len(packed)) + packed
    return b"\x1a" + _varint(len(inner)) + inner


@functools.lru_cache(maxsize=4096)
def _float_entry_head(key: str, count: int) -> bytes:
    """Everything of a float-list entry before its packed values: fixed for a key and a count."""
    return _feature_entry(key, _float_feature([0.0] * count))[:-4 * count or None]


@functools.lru_cache(maxsize=1024)
def _float_packer(count: int):
    return struct.Struct(f"<{count}f").pack


def encode_example(frame_id: str, width: int, height: int, image_format: str, image: bytes,
                   objects: Sequence[Any]) -> tuple[bytes, bytes]:
    """Serialise one frame as a ``tf.train.Example``.

    Args:
        frame_id: the frame's id (file name without extension).
        width: image width in pixels.
        height: image height in pixels.
        image_format: ``png`` or ``jpeg``.
        image: the encoded image file's bytes, stored unchanged in ``frame/encoded``.
        objects: `tlt.data.kitti.KittiObject` instances (any objects with the same attributes).

    Returns:
        ``(head, image)``: the serialised Example is ``head + image``. Keeping the two apart lets
        writers send the image to the file without copying it into one buffer.
    """
    entries = [
        _feature_entry("frame/id", _bytes_feature([frame_id.encode("utf-8")])),
        _feature_entry("frame/width", _int64_feature([width])),
        _feature_entry("frame/height", _int64_feature([height])),
        _feature_entry("frame/format", _bytes_feature([image_format.encode("ascii")])),
        _feature_entry("target/object_class",
                       _bytes_feature([o.object_class.encode("utf-8") for o in objects])),
        _feature_entry("target/occlusion", _int64_feature([o.occlusion for o in objects])),
    ]
    n = len(objects)
    columns = list(zip(*[[getattr(o, a) for a in TARGET_FLOAT_ATTRS.values()] for o in objects]))
    pack = _float_packer(n)
    for i, key in enumerate(TARGET_FLOAT_ATTRS):
        entries.append(_float_entry_head(key, n) + (pack(*columns[i]) if n else b""))
    if objects and all(o.score is not None for o in objects):
        entries.append(_feature_entry("target/score", _float_feature([o.score for o in objects])))
    # frame/encoded goes last so that its bytes can follow the head unchanged.
    key_head = _KEY_HEADS["frame/encoded"]
    value_len = _varint(len(image))
    bytes_list_len = 1 + len(value_len) + len(image)
    feature_len = 1 + len(_varint(bytes_list_len)) + bytes_list_len
    entry_len = len(key_head) + len(_varint(feature_len)) + feature_len
    encoded_head = b"".join([b"\x0a", _varint(entry_len), key_head, _varint(feature_len),
                             b"\x0a", _varint(bytes_list_len), b"\x0a", value_len])
    features_len = sum(map(len, entries)) + len(encoded_head) + len(image)
    head = b"".join([b"\x0a", _varint(features_len), *entries, encoded_head])
    return head, image


def _masked_crc(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


class TFRecordWriter:
    """Writes TFRecord files (uncompressed) without TensorFlow; byte-identical to TF's writer.

    Use as a context manager; each `write` appends one record given as one or more byte pieces.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file: BinaryIO = open(self.path, "wb")

    def write(self, *pieces: bytes) -> None:
        """Append one record whose payload is the concatenation of ``pieces``."""
        length = _U64.pack(sum(map(len, pieces)))
        crc = 0
        for piece in pieces:
            crc = google_crc32c.extend(crc, piece)
        self._file.write(length + _U32.pack(_masked_crc(google_crc32c.value(length))))
        for piece in pieces:
            self._file.write(piece)
        self._file.write(_U32.pack(_masked_crc(crc)))

    def close(self) -> None:
        """Flush and close the file (fsynced, so a published shard is on disk)."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _not_a_tfrecord(path: str | os.PathLike, why: str) -> DataError:
    return DataError(f"{os.fspath(path)}: not a TFRecord file ({why}); check that the tfrecords "
                     "pattern matches only shard files")


def _header_length(path: str | os.PathLike, header: bytes, index: int) -> int:
    """The payload length in a record header, once its CRC proves the header is one."""
    if len(header) < 12:
        if index == 0:
            raise _not_a_tfrecord(path, f"{len(header)} bytes, shorter than a record header")
        raise DataError(f"{path}: record {index} is truncated (header of {len(header)} bytes), "
                        "expected 12")
    if _U32.unpack_from(header, 8)[0] != _masked_crc(google_crc32c.value(header[:8])):
        if index == 0:
            raise _not_a_tfrecord(path, "the first record's length fails its masked CRC32C")
        raise DataError(f"{path}: record {index} has a corrupt length header (masked CRC32C "
                        "mismatch)")
    return _U64.unpack_from(header)[0]


def read_records(path: str | os.PathLike, *, verify: bool = True) -> Iterator[bytes]:
    """Yield the payload of every record in an uncompressed TFRecord file.

    Every record's length header is checked against its masked CRC32C and the file size before
    anything is read: that is what tells a TFRecord from another file (a ``metadata.json`` the
    tfrecords pattern also matched would otherwise be read as a length of terabytes).

    Args:
        path: local file.
        verify: also check the CRC of every record's payload.

    Raises:
        DataError: the file is not a TFRecord file, is truncated or a checksum does not match;
            the message names the file.
    """
    with open(path, "rb") as f:
        remaining = os.fstat(f.fileno()).st_size
        index = 0
        while True:
            header = f.read(12)
            if not header:
                return
            length = _header_length(path, header, index)
            remaining -= 12
            if length + 4 > remaining:
                raise DataError(f"{path}: record {index} is truncated, expected {length} bytes "
                                f"and a CRC, {max(remaining, 0)} left")
            data = f.read(length)
            footer = f.read(4)
            remaining -= length + 4
            if verify and _U32.unpack(footer)[0] != _masked_crc(google_crc32c.value(data)):
                raise DataError(f"{path}: record {index} fails its CRC32C check")
            yield data
            index += 1


def check_tfrecord_file(path: str | os.PathLike) -> None:
    """Cheaply check that ``path`` starts like a TFRecord file (for readers that use tf.data).

    An empty file passes (a shard of an empty fold).

    Raises:
        DataError: naming the file, when its first record header is not a TFRecord header or the
            record it announces is longer than the file.
    """
    with open(path, "rb") as f:
        header = f.read(12)
        if header:
            length = _header_length(path, header, 0)
            if length + 16 > os.fstat(f.fileno()).st_size:
                raise DataError(f"{path}: record 0 is truncated, expected {length} bytes")


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message's fields."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise DataError(f"unsupported protobuf wire type {wire} in a tf.train.Example")
        yield number, wire, value


def decode_example(serialized: bytes) -> dict[str, list]:
    """Decode a serialised ``tf.train.Example`` into ``{key: list of values}`` without TensorFlow.

    Bytes values stay bytes, floats are float32 values as Python floats, int64s are ints.
    """
    out: dict[str, list] = {}
    for _, _, features in _fields(memoryview(serialized)):
        for _, _, entry in _fields(features):
            key, feature = "", memoryview(b"")
            for number, _, value in _fields(entry):
                if number == 1:
                    key = bytes(value).decode("utf-8")
                else:
                    feature = value
            values: list = []
            for kind, _, payload in _fields(feature):
                for _, wire, item in _fields(payload):
                    if kind == 1:
                        values.append(bytes(item))
                    elif kind == 2 and wire == 2:
                        values.extend(struct.unpack(f"<{len(item) // 4}f", item))
                    elif kind == 2:
                        values.append(struct.unpack("<f", item)[0])
                    elif wire == 2:
                        pos = 0
                        while pos < len(item):
                            v, pos = _read_varint(item, pos)
                            values.append(v - (1 << 64) if v >= 1 << 63 else v)
                    else:
                        values.append(item - (1 << 64) if item >= 1 << 63 else item)
            out[key] = values
    return out


def feature_spec() -> dict[str, Any]:
    """The ``tf.io.parse_example`` spec of detection frames (frame scalars, target lists)."""
    import tensorflow as tf

    spec: dict[str, Any] = {
        "frame/id": tf.io.FixedLenFeature([], tf.string),
        "frame/width": tf.io.FixedLenFeature([], tf.int64),
        "frame/height": tf.io.FixedLenFeature([], tf.int64),
        "frame/format": tf.io.FixedLenFeature([], tf.string),
        "frame/encoded": tf.io.FixedLenFeature([], tf.string),
        "target/object_class": tf.io.VarLenFeature(tf.string),
        "target/occlusion": tf.io.VarLenFeature(tf.int64),
    }
    for key in TARGET_FLOAT_KEYS + ("target/score",):
        spec[key] = tf.io.VarLenFeature(tf.float32)
    return spec


def parse_example(serialized: Any) -> dict[str, Any]:
    """Parse one serialised frame with TensorFlow; target features become dense 1-D tensors."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, feature_spec())
    return {key: tf.sparse.to_dense(value) if isinstance(value, tf.SparseTensor) else value
            for key, value in parsed.items()}
