"""Export: trained .tlt models -> ONNX (.onnx, or .etlt under the .tlt encryption), INT8
calibration caches, DeepStream and Triton configurations (guide chapters 9 and 10).

`export_model` is tlt-export; the engines built from its output live in `tlt.engines`.
"""

from __future__ import annotations

from tlt.export.exporter import DATA_TYPES, ExportOptions, ExportResult, default_output, export_model

__all__ = ["DATA_TYPES", "ExportOptions", "ExportResult", "default_output", "export_model"]
