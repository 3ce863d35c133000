"""INT8 calibration caches in TensorRT's text format (what ``read_calibration_cache`` returns).

The file is what TensorRT's entropy calibrator writes and reads back::

    TRT-8601-EntropyCalibration2
    input_1: 3c010204
    conv1/Relu:0: 3d8f5c29

one line per tensor: its ONNX name, ``": "``, and the per-tensor INT8 scale (the activation's
absolute maximum / 127) as the 8 hex digits of the float32's bits, most significant byte first
(``struct.pack(">f", scale).hex()``). The header names the TensorRT version and the calibrator;
TensorRT ignores a cache whose header names another algorithm, so the TensorRT builder rewrites
the version to its own (`with_trt_version`) before handing the bytes over.

The ONNX Runtime builder reads the same file (`amax`), so one cache serves both backends.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from tlt.errors import DataError
from tlt.io.atomic import atomic_write_text

__all__ = ["ALGORITHM", "HEADER_ALGORITHMS", "DEFAULT_TRT_VERSION", "CalibrationCache", "read_cache", "parse_cache",
           "write_cache", "format_cache", "with_trt_version", "check_cache_matches"]

ALGORITHM = "EntropyCalibration2"
#: Header algorithm of each way tlt-export computes ranges (TensorRT's calibrator of that name
#: reads a cache only when the header names its own algorithm).
HEADER_ALGORITHMS = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration"}
# TensorRT 8.6.1 writes "8601"; any version string parses, the TensorRT builder substitutes its own.
DEFAULT_TRT_VERSION = "8601"
_INT8_MAX = 127.0
_HEADER = re.compile(r"^TRT-(\w+)-(\w+)$")
_LINE = re.compile(r"^(.+): ([0-9a-fA-F]{1,8})$")


@dataclass
class CalibrationCache:
    """Per-tensor INT8 scales, in file order.

    Attributes:
        scales: tensor name -> scale (absolute maximum / 127).
        trt_version: the version field of the header.
        algorithm: the calibrator named by the header.
    """

    scales: dict[str, float] = field(default_factory=dict)
    trt_version: str = DEFAULT_TRT_VERSION
    algorithm: str = ALGORITHM

    @classmethod
    def from_ranges(cls, amax: dict[str, float], trt_version: str = DEFAULT_TRT_VERSION,
                    algorithm: str = ALGORITHM):
        """Cache from activation ranges (tensor name -> the |x| the INT8 range covers)."""
        return cls({name: _scale(name, value) for name, value in amax.items()}, trt_version,
                   algorithm)

    def amax(self) -> dict[str, float]:
        """Tensor name -> absolute maximum (scale * 127), the range an INT8 tensor covers."""
        return {name: scale * _INT8_MAX for name, scale in self.scales.items()}


def _scale(name: str, amax: float) -> float:
    value = float(amax)
    if not math.isfinite(value) or value < 0:
        raise DataError(f"calibration range of tensor {name!r} is {value}, expected a finite "
                        "value >= 0 (does the model produce NaN or inf on the calibration images?)")
    # An all-zero tensor still needs a usable (non-zero) scale.
    return max(value, 1e-8) / _INT8_MAX


def format_cache(cache: CalibrationCache) -> str:
    """The cache as TensorRT's text."""
    lines = [f"TRT-{cache.trt_version}-{cache.algorithm}"]
    lines += [f"{name}: {struct.pack('>f', scale).hex()}" for name, scale in cache.scales.items()]
    return "\n".join(lines) + "\n"


def write_cache(path: str | Path, cache: CalibrationCache) -> None:
    """Write the cache atomically."""
    atomic_write_text(path, format_cache(cache))


def parse_cache(text: str, source: str = "<calibration cache>") -> CalibrationCache:
    """Parse TensorRT's calibration cache text.

    Raises:
        DataError: no ``TRT-<version>-<algorithm>`` header, or a line that is not
            ``name: <hex>`` (the message names the line).
    """
    lines = text.splitlines()
    header = _HEADER.match(lines[0].strip()) if lines else None
    if header is None:
        raise DataError(f"{source}: not a TensorRT calibration cache (first line should be "
                        f"TRT-<version>-{ALGORITHM}, got {lines[0][:60] if lines else 'nothing'!r})")
    cache = CalibrationCache({}, header.group(1), header.group(2))
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        match = _LINE.match(line.rstrip())
        if match is None:
            raise DataError(f"{source}:{number}: expected '<tensor name>: <8 hex digits>', "
                            f"got {line[:80]!r}")
        (scale,) = struct.unpack(">f", bytes.fromhex(match.group(2).rjust(8, "0")))
        cache.scales[match.group(1)] = scale
    if not cache.scales:
        raise DataError(f"{source}: the calibration cache holds no tensor scales")
    return cache


def read_cache(path: str | Path) -> CalibrationCache:
    """Read a cache file (see `parse_cache`).

    Raises:
        DataError: the file is missing, unreadable or malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such calibration cache file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable calibration cache ({err})") from None
    return parse_cache(text, str(path))


def with_trt_version(cache: CalibrationCache, trt_version: str) -> bytes:
    """The cache text with the header naming ``trt_version``, as bytes for TensorRT."""
    return format_cache(CalibrationCache(dict(cache.scales), trt_version, cache.algorithm)).encode()


def check_cache_matches(cache: CalibrationCache, tensors, source: str) -> None:
    """Fail when the cache names tensors the model lacks (a cache made for another export).

    Args:
        cache: the calibration cache.
        tensors: the model's tensor names (`tlt.engines.signature.tensor_names`).
        source: the cache file, for the message.

    Raises:
        DataError: naming up to three of the unknown tensors.
    """
    unknown = [n for n in cache.scales if n not in tensors]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise DataError(f"{source}: the calibration cache names tensors this model does not have "
                        f"({shown}{more}): it was made for another export; recreate it with "
                        "tlt-export --data_type int8")
