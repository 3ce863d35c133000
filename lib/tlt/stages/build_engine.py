"""The ``build_engine`` stage: ``tlt-converter`` and the engine component call this."""

from __future__ import annotations

__all__ = ["run"]


def run(source: str, *, key: str | None = None, **options):
    """Build an engine from an export (see `tlt.engines.build_engine`; ``options`` are
    `tlt.engines.BuildOptions` fields).

    Returns:
        The engine's `tlt.engines.EngineInfo` (its sidecar).
    """
    from tlt.engines import BuildOptions, build_engine

    return build_engine(source, key, BuildOptions(**options))
