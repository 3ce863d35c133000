"""Shared pytest set-up. Fixture modules live next to this file and are loaded as plugins."""

import os
import sys
from pathlib import Path

import pytest

# Keep TensorFlow quiet and single-threaded enough for a 2-core CI machine.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = [p for p in ("storage_servers",) if (Path(__file__).parent / f"{p}.py").exists()]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_KITTI = REPO_ROOT.parent / "shared" / "data" / "kitti-samples"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def kitti_samples() -> Path:
    """The 7 real KITTI frames in ../shared (skips cleanly where ../shared is absent)."""
    if not (SHARED_KITTI / "images").is_dir():
        pytest.skip("../shared/data/kitti-samples is not present")
    return SHARED_KITTI
