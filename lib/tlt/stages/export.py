"""The ``export`` stage: ``tlt-export`` and the export component call this."""

from __future__ import annotations

__all__ = ["run"]


def run(model: str, *, key: str | None = None, **options):
    """Export a .tlt model (see `tlt.export.export_model`; ``options`` are `ExportOptions` fields).

    Returns:
        The `tlt.export.ExportResult`.
    """
    from tlt.export import ExportOptions, export_model

    return export_model(model, key, ExportOptions(**options))
