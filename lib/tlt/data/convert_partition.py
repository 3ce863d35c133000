"""Partitioning frames into folds: a random validation split, or whole video sequences per fold.

Deterministic by construction: ids are sorted before any shuffle and every shuffle uses
`SHUFFLE_SEED`, so the same data set always gives the same folds.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Iterable, Sequence

from tlt.errors import DataError

__all__ = ["SHUFFLE_SEED", "SequencePartition", "partition_random", "read_sequence_map",
           "partition_sequences"]

# Fixed seed of every shuffle, so that two runs over the same data write the same bytes.
SHUFFLE_SEED = 42


@dataclass
class SequencePartition:
    """Folds built from a sequence map, and the frames the map and the data set disagree on."""

    folds: list[list[str]]
    frames_not_in_sequence: list[str]
    sequence_frames_missing: list[str]


def partition_random(frame_ids: Sequence[str], val_split: float,
                     seed: int = SHUFFLE_SEED) -> list[list[str]]:
    """Split frames into fold 0 (validation, ``val_split`` percent) and fold 1 (training).

    The sorted ids are shuffled with a fixed seed before the split, so validation frames come from
    the whole data set rather than its first files (TLT split the sorted list).
    """
    ids = sorted(frame_ids)
    random.Random(seed).shuffle(ids)
    num_val = int(len(ids) * val_split / 100.0)
    return [ids[:num_val], ids[num_val:]]


def read_sequence_map(data: bytes, name: str) -> dict[str, list[str]]:
    """Parse a ``kitti_seq_to_frames.json`` map (guide 4.2.2): sequence -> list of frame ids.

    Raises:
        DataError: not JSON, not an object of lists, or a frame listed in two sequences.
    """
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{name}: not valid JSON ({err}), expected "
                        '{"sequence name": ["frame id", ...]}') from None
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise DataError(f"{name}: expected a JSON object mapping each sequence name to a list "
                        "of frame ids")
    owner: dict[str, str] = {}
    seq_map: dict[str, list[str]] = {}
    for seq, frames in raw.items():
        ids = [str(f) for f in frames]
        for fid in ids:
            if fid in owner:
                raise DataError(f"{name}: frame {fid!r} is listed in sequences {owner[fid]!r} "
                                f"and {seq!r}, expected each frame in one sequence")
            owner[fid] = seq
        seq_map[str(seq)] = ids
    return seq_map


def partition_sequences(seq_map: dict[str, list[str]], frame_ids: Iterable[str],
                        num_folds: int, seed: int = SHUFFLE_SEED) -> SequencePartition:
    """Assign whole sequences to ``num_folds`` folds, balancing the folds' frame counts.

    Sequences are taken largest first (ties by name) and each goes to the fold with the fewest
    frames so far (ties to the lowest index): deterministic and close to even. Only frames present
    in the data set count; frames of each fold are then shuffled with a fixed seed.
    """
    present = set(frame_ids)
    in_map = {fid for frames in seq_map.values() for fid in frames}
    kept = {seq: [f for f in frames if f in present] for seq, frames in seq_map.items()}
    folds: list[list[str]] = [[] for _ in range(num_folds)]
    for _seq, frames in sorted(kept.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        target = min(range(num_folds), key=lambda i: (len(folds[i]), i))
        folds[target].extend(frames)
    rng = random.Random(seed)
    for fold in folds:
        rng.shuffle(fold)
    return SequencePartition(folds, sorted(present - in_map), sorted(in_map - present))
