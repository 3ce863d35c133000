"""Helpers of the tests that watch a training run's checkpoints from outside."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["latest_epoch"]


def latest_epoch(path: Path) -> int:
    """The epoch ``latest.json`` at ``path`` names; 0 while it is missing or being replaced."""
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0
