"""The evaluate stage's detection measurement: the AP table of a detector (Keras model, export or
engine) on the validation data of its spec, the report with annotated validation frames, and the
scalars the Kubeflow UI shows."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from tlt.errors import PipelineError
from tlt.orchestration.adapters_common import use_convert_output

_log = logging.getLogger(__name__)

__all__ = ["detection_scalars", "evaluate_detection"]


def evaluate_detection(params: Mapping[str, Any], inputs: Mapping[str, str], model_path: str,
                       outputs: Mapping[str, str]):
    """Evaluate a detector; the full results go to ``metrics``/evaluation.json.

    Returns:
        (the spec evaluated on, (scalar metrics, {} for the confusion output, the HTML report)).

    Raises:
        PipelineError: no spec parameter and none stored in the model.
    """
    from tlt.evaluation.report import annotated_validation_samples, detection_report_html
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate as evaluate_stage

    predictor, stored_spec = _detection_predictor(params, model_path, resolve_key(None))
    spec = _detection_spec(params, inputs, stored_spec)
    evaluation = evaluate_stage.run_detection(
        spec, model_path, key=resolve_key(None), mode=params.get("mode") or None,
        batch_size=int(params["batch_size"]),
        results_json=str(Path(outputs["metrics"]) / "evaluation.json"),
        framework=params.get("framework") or None)
    _log.info("Found %d samples in validation set; validation cost %s\n%s", evaluation.num_frames,
              evaluation.validation_cost, evaluation.results.table())
    samples = annotated_validation_samples(predictor, spec, max_frames=4)
    report = detection_report_html(evaluation.results, evaluation.validation_cost, samples)
    return spec, (detection_scalars(evaluation), {}, report)


def detection_scalars(evaluation) -> dict[str, float]:
    """The Kubeflow Metrics of a detection evaluation: the AP table's columns and the cost.

    ``ap_<class>_<column>`` and ``mAP_<column>`` for ``combined`` and every bucket, as in the
    results JSON (``columns``), skipping the n/a cells (no ground truth); ``mAP`` repeats
    ``mAP_combined`` (0 when n/a) as the one number a run is compared by.
    """
    results = evaluation.results
    scalars = {"num_frames": evaluation.num_frames, "mAP": results.mean_ap.get("combined") or 0.0}
    if evaluation.validation_cost is not None:  # deployed models have no training loss to report
        scalars["validation_cost"] = evaluation.validation_cost
    scalars.update({k: v for k, v in results.columns().items() if v is not None})
    return scalars


def _detection_spec(params: Mapping[str, Any], inputs: Mapping[str, str], stored_spec: str | None):
    """The detection experiment: the spec parameter, else the one stored in the model; its data
    sources replaced by the convert stage's TFRecords when connected."""
    from tlt import spec as tlt_spec

    spec_text = params.get("spec") or stored_spec or ""
    if not spec_text:
        raise PipelineError("evaluate: detection needs the spec parameter (the model stores none)")
    spec = tlt_spec.loads(spec_text, "detection")
    if "dataset" in inputs:
        use_convert_output(spec, inputs["dataset"])
    return spec


def _detection_predictor(params: Mapping[str, Any], model_path: str, key: str | None):
    """(predictor with ``predict_on_batch``, the spec stored in the model or None)."""
    from tlt.inference.deployed import resolve_framework

    framework = resolve_framework(model_path, params.get("framework") or None)
    if framework == "tlt":
        from tlt.io.modelfile import load_keras_model

        model, metadata = load_keras_model(model_path, key=key, compile=False)
        return model, metadata.get("spec")
    from tlt.evaluation.deployed_detection import BBOX, COV
    from tlt.inference.deployed import load_deployed

    deployed = load_deployed(model_path, framework=framework, key=key)
    names = [deployed.output_name(*COV), deployed.output_name(*BBOX)]
    return deployed.predictor(names), deployed.metadata.get("spec")
