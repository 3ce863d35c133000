"""Keep TensorFlow's native start-up noise off a CLI user's terminal (unless they ask with -v).

On a CPU-only machine ``import tensorflow`` writes lines such as::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1795858622.344844 6783 cudart_stub.cc:31] Could not find cuda drivers on your machine ...
    I0000 00:00:1795858622.704558 6783 cpu_feature_guard.cc:227] This TensorFlow binary is optimized ...

straight to file descriptor 2 from C++, before Python logging exists, and the first device query
adds ``E... cuda_platform.cc:52] failed call to cuInit``. ``TF_CPP_MIN_LOG_LEVEL`` does not reach
the import-time lines (XLA's libraries log through absl before it is initialised, and absl offers
no environment switch), so two measures are combined:

- ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it) silences TensorFlow's own C++ log after import,
  which is where cuInit is reported;
- the one ``import tensorflow`` of the process runs with fd 2 redirected to a temporary file;
  afterwards every line that is not start-up noise is written back to the real stderr, so a
  genuine import error is still seen.

`quiet_tensorflow` arms both before TensorFlow is imported (it is imported lazily by every CLI);
`restore` disarms them, for callers that run a CLI inside a longer-lived process.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from typing import Iterator

__all__ = ["NOISE", "is_noise", "quiet_tensorflow", "restore", "filtered_stderr"]


def _prefix(levels: str) -> str:
    """A C++ log line's prefix at one of ``levels``: absl's ``I0000 00:00:...`` or TF's older form."""
    return (rf"(?:[{levels}]\d{{4}} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
            rf"|\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [{levels}] \S+:\d+\] )")


NOISE = re.compile("|".join([
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    _prefix("IW"),                                                   # start-up info and warnings
    _prefix("E") + r".*(?i:cuda|cuinit|cudnn|cufft|cublas|cudart)",  # errors of the absent GPU stack
    r"To enable the following instructions: .* rebuild TensorFlow",  # cpu_feature_guard, 2nd line
]))

_ENV = "TF_CPP_MIN_LOG_LEVEL"
_state: dict = {"finder": None, "env_set": False}


def is_noise(line: str) -> bool:
    """Whether a stderr line is TensorFlow start-up noise (CUDA absent, CPU features, absl)."""
    return NOISE.match(line) is not None


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Within the block, fd 2 goes to a temporary file; on exit its non-noise lines are replayed."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of ``tensorflow`` inside `filtered_stderr`."""

    def __init__(self, inner: importlib.abc.Loader):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        # The module keeps the real loader: tools that read __loader__ must not see this wrapper.
        module.__loader__ = self._inner
        if module.__spec__ is not None:
            module.__spec__.loader = self._inner
        with filtered_stderr():
            self._inner.exec_module(module)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as usual, but hands it a loader that filters its start-up output."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        _uninstall()  # one import per process; also keeps the lookup below from recursing
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _uninstall() -> None:
    finder = _state["finder"]
    if finder is not None and finder in sys.meta_path:
        sys.meta_path.remove(finder)
    _state["finder"] = None


def quiet_tensorflow() -> None:
    """Arm the two measures (see the module docstring); a no-op once TensorFlow is loaded."""
    if "tensorflow" in sys.modules:
        return
    if _ENV not in os.environ:
        os.environ[_ENV] = "3"
        _state["env_set"] = True
    if _state["finder"] is None:
        _state["finder"] = _QuietTensorFlowFinder()
        sys.meta_path.insert(0, _state["finder"])


def restore() -> None:
    """Undo `quiet_tensorflow`: remove the import filter and the environment value it set."""
    _uninstall()
    if _state["env_set"]:
        os.environ.pop(_ENV, None)
        _state["env_set"] = False
