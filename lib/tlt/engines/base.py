"""What every engine runner offers: a batch of NCHW float32 images in, named outputs out."""

from __future__ import annotations

import abc

import numpy as np

from tlt.engines.sidecar import EngineInfo
from tlt.errors import BackendUnavailable, DataError

__all__ = ["BackendUnavailable", "Engine"]


class Engine(abc.ABC):
    """A loaded engine. Subclasses implement `_run_chunk`.

    Args:
        path: the engine file.
        info: its sidecar.
    """

    def __init__(self, path: str, info: EngineInfo):
        self.path = str(path)
        self.info = info

    @property
    def input_dims(self) -> tuple[int, int, int]:
        """``(C, H, W)`` the engine was built for."""
        return tuple(int(d) for d in self.info.input_dims)

    @property
    def output_names(self) -> list[str]:
        """Output names, in the order `run` reports them."""
        return list(self.info.output_names)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a batch of any size (split into chunks of at most ``max_batch_size``).

        Args:
            batch: ``[N, C, H, W]`` float32, preprocessed as the export's metadata says.

        Returns:
            Output name -> ``[N, ...]`` float32 array.

        Raises:
            DataError: the batch does not have the engine's input shape.
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_dims:
            raise DataError(f"{self.path}: engine input is N x {' x '.join(map(str, self.input_dims))}"
                            f" (C x H x W), got a batch of shape {tuple(batch.shape)}")
        step = max(1, int(self.info.max_batch_size))
        parts = [self._run_chunk(batch[i:i + step]) for i in range(0, len(batch), step)]
        if not parts:
            return {name: np.zeros((0,), np.float32) for name in self.output_names}
        return {name: np.concatenate([p[name] for p in parts]) for name in self.output_names}

    @abc.abstractmethod
    def _run_chunk(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch of at most ``max_batch_size`` frames (each backend implements it)."""
