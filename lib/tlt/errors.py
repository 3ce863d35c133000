"""Typed errors raised by the library.

Library code never prints or exits: it raises one of these, and the CLIs (`tlt.cli`) turn any
`TLTError` into one clear line on stderr and a non-zero exit code. Each message is written to be
that line: it names the file, line, field or URI at fault and what was expected.
"""

from __future__ import annotations

__all__ = [
    "TLTError",
    "SpecError",
    "DataError",
    "StorageError",
    "ModelFileError",
    "ModelKeyError",
    "RegistryError",
    "PipelineError",
    "Interrupted",
    "GateError",
    "BackendUnavailable",
]


class TLTError(Exception):
    """Base class of every error the library raises on purpose."""

    exit_code = 1


class SpecError(TLTError):
    """A spec file (prototxt, YAML or JSON) is malformed or holds a value out of range.

    Attributes:
        path: the spec file, when known.
        line: 1-based line number in that file, when known.
        field: dotted field path such as ``train_config.batch_size_per_gpu``, when known.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.path = path
        self.line = line
        self.field = field
        self.detail = message
        where = ""
        if path:
            where = f"{path}:{line}: " if line else f"{path}: "
        elif line:
            where = f"line {line}: "
        super().__init__(f"{where}{message}")


class DataError(TLTError):
    """Input data (images, labels, TFRecords, data set folders) is missing or malformed."""


class StorageError(TLTError):
    """A local path, gs:// or s3:// object could not be read or written."""


class ModelFileError(TLTError):
    """A model file (.tlt/.etlt) is missing, corrupt or of the wrong kind."""


class ModelKeyError(ModelFileError):
    """A model file could not be decrypted: wrong key, missing key or tampered bytes."""


class RegistryError(TLTError):
    """A model registry is missing, malformed, or lacks the requested model or version."""


class PipelineError(TLTError):
    """A pipeline could not be compiled or run."""


class Interrupted(TLTError):
    """The process was asked to stop (SIGTERM from Kubernetes eviction or ``timeout``).

    Raised in the main thread by `tlt.signals.sigterm_raises`, so a stage unwinds through its
    ``finally`` blocks, leaves no partial output visible and marks ``status.json`` interrupted.
    A rerun of the same command resumes. Exit code 143 = 128 + SIGTERM, as a shell reports it.
    """

    exit_code = 143


class GateError(TLTError):
    """A data or quality gate failed and the caller required it to pass (tlt.gates.report.require)."""


class BackendUnavailable(TLTError):
    """The backend an engine needs (TensorRT, a GPU) is not available in this process."""
