"""Looking a name up in one of the orchestration's tables (stages, adapters, pipelines, images)
with the one-line error every lookup gives: what was asked for and the names that exist."""

from __future__ import annotations

from typing import Mapping, TypeVar

from tlt.errors import PipelineError

__all__ = ["lookup"]

_T = TypeVar("_T")


def lookup(table: Mapping[str, _T], name: str, problem: str) -> _T:
    """``table[name]``.

    Args:
        table: the catalogue (its keys are listed in the error, in table order).
        name: the key asked for.
        problem: what a missing key means, e.g. ``"unknown stage 'x'"``.

    Raises:
        PipelineError: ``"<problem>: expected one of <keys>"`` when ``name`` is not a key.
    """
    try:
        return table[name]
    except KeyError:
        raise PipelineError(f"{problem}: expected one of {', '.join(table)}") from None
