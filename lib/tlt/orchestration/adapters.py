"""Stage adapters: orchestration parameters and artifact folders -> one `tlt.stages` call.

Each adapter has the signature ``adapter(params, inputs, outputs) -> {output name: metadata}``:
``params`` maps parameter names to typed values, ``inputs``/``outputs`` map artifact names to local
folders. The returned metadata is what the Kubeflow UI shows on each output artifact. KFP
components and Argo containers both reach the stages only through these functions (dispatched by
`tlt.orchestration.adapter_table`).

The model stages' adapters live one module a stage: `adapters_convert`, `adapters_training` (train
and retrain), `adapters_prune`, `adapters_export`, `adapters_engine` (build_engine) and
`adapters_evaluate` (with `adapters_evaluate_classification`, `adapters_evaluate_detection` and
`adapters_comparison`); what they share is in `adapters_common`. This module gathers them under
the one name pipelines, tests and the other adapter modules import.
"""

from __future__ import annotations

from tlt.orchestration.adapters_common import use_convert_output
from tlt.orchestration.adapters_convert import convert
from tlt.orchestration.adapters_engine import build_engine
from tlt.orchestration.adapters_evaluate import evaluate
from tlt.orchestration.adapters_evaluate_detection import detection_scalars
from tlt.orchestration.adapters_export import export
from tlt.orchestration.adapters_prune import prune
from tlt.orchestration.adapters_training import retrain, train

__all__ = ["use_convert_output", "convert", "train", "retrain", "prune", "export", "build_engine",
           "evaluate", "detection_scalars"]
