"""Adapters of the retraining stages (`tlt.orchestration.registry_retraining`).

Same contract as `tlt.orchestration.adapters`: ``adapter(params, inputs, outputs) -> {output name:
metadata}`` on local folders, plus the champion stage's scalar result ``has_champion`` under
`tlt.orchestration.results.RESULTS_KEY` (the ``dsl.If`` choosing fine-tuning or a first training
reads it); it is also in the champion artifact's metadata.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

from tlt.errors import PipelineError
from tlt.orchestration.adapters_common import use_convert_output
from tlt.orchestration.model_cards import model_file
from tlt.orchestration.results import RESULTS_KEY
from tlt.orchestration.stage_types import Adapter

__all__ = ["RETRAINING_ADAPTERS", "champion", "data_gate", "promote"]

_log = logging.getLogger(__name__)


def champion(params: Mapping[str, Any], inputs: Mapping[str, str],
             outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.champion`: the production model (or "none yet") into ``champion``.

    With ``finetune_spec`` (and ``train_spec``) given, the run stops here, in one line, when
    finetune_spec's model is not the champion's (as promote recorded it) or not train_spec's:
    fine-tuning would otherwise keep only the layers that happen to fit.

    Raises:
        SpecError: the specs' models differ (or a spec does not parse).
        RegistryError: as `tlt.stages.champion.run`.
    """
    from tlt.stages import champion as champion_stage

    outcome = champion_stage.run(params["registry_uri"], params["model_name"],
                                 outputs["champion"], alias=params["alias"],
                                 required=bool(params["require_champion"]))
    model = _recorded_model(params, outcome.version) if outcome.has_champion else None
    _check_finetune_spec(params, model)
    meta = outcome.metadata
    return {"champion": {"stage": "champion", "has_champion": outcome.has_champion,
                         "version": outcome.version, "model_name": params["model_name"],
                         "metrics": meta.get("metrics") or {},
                         "class_counts": meta.get("class_counts") or {},
                         "model_config": model.to_dict() if model else {}},
            RESULTS_KEY: {"has_champion": outcome.has_champion}}


def _recorded_model(params: Mapping[str, Any], version: str):
    """The champion's architecture and input size as promote recorded them with its version
    (None for a version published before promote recorded them: the stage holds no model key,
    so it cannot read the encrypted model file itself)."""
    from tlt.io.registry import Registry
    from tlt.retraining.model_match import shape_of_metadata

    info = Registry(params["registry_uri"]).get_version(params["model_name"], version)
    return shape_of_metadata(info.metadata.get("model_config") or {})


def _check_finetune_spec(params: Mapping[str, Any], champion_model) -> None:
    """Refuse, before any data is converted or trained on, a finetune_spec that cannot start
    from the champion or that describes another model than train_spec (both optional)."""
    from tlt import spec as tlt_spec
    from tlt.retraining.model_match import check_finetune_spec, shape_of_spec

    task = params.get("task") or "detection"
    if not params.get("finetune_spec"):
        return
    finetune = shape_of_spec(tlt_spec.loads(params["finetune_spec"], task), task)
    train = (shape_of_spec(tlt_spec.loads(params["train_spec"], task), task)
             if params.get("train_spec") else None)
    check_finetune_spec(finetune, champion=champion_model, train=train)


def _reference_counts(inputs: Mapping[str, str]) -> dict[str, int] | None:
    """The champion's training class counts from its artifact's metadata (None: no champion)."""
    from tlt.artifacts import read_metadata
    from tlt.gates.data_gate import class_counts_from_lineage

    if "champion" not in inputs:
        return None
    return class_counts_from_lineage(read_metadata(inputs["champion"]))


def data_gate(params: Mapping[str, Any], inputs: Mapping[str, str],
              outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.data_gate` on ``new_data_uri``; the HTML report goes to ``report`` and the
    JSON/Markdown to ``gate``, written before a failed check stops the run."""
    from tlt.gates.data_gate import DataGateConfig
    from tlt.io.atomic import atomic_write_text
    from tlt.stages import data_gate as gate_stage

    config = DataGateConfig(
        max_malformed_rate=float(params["max_malformed_rate"]),
        max_unreadable_rate=float(params["max_unreadable_rate"]),
        max_balance_shift=float(params["max_balance_shift"]),
        allow_missing_classes=bool(params["allow_missing_classes"]),
        allow_new_classes=bool(params["allow_new_classes"]))
    folder = Path(outputs["gate"])
    folder.mkdir(parents=True, exist_ok=True)
    try:
        report = gate_stage.run(params["new_data_uri"], folder, task=params["task"],
                                reference_counts=_reference_counts(inputs), config=config,
                                image_dir=params["image_dir"], label_dir=params["label_dir"],
                                image_extension=params["image_extension"])
    finally:  # the Kubeflow UI shows the HTML output, also for a failed gate
        page = folder / "data_gate.html"
        if page.is_file():
            atomic_write_text(outputs["report"], page.read_text(encoding="utf-8"))
    scalars = {"passed": 1.0, "num_frames": float(report.details["num_frames"])}
    scalars.update({c.name: float(c.value) for c in report.checks
                    if isinstance(c.value, (int, float)) and not isinstance(c.value, bool)})
    return {"gate": scalars, "report": {"stage": "data_gate", "summary": report.summary()}}


def _held_out(params: Mapping[str, Any], inputs: Mapping[str, str]) -> tuple[Any, str]:
    """(the detection spec or None, a name of the held-out set both models are scored on)."""
    from tlt import spec as tlt_spec
    from tlt.artifacts import read_metadata

    if params["task"] == "classification":
        if not params.get("data_dir"):
            raise PipelineError("promote: classification needs the data_dir parameter (the "
                                "held-out images)")
        return None, params["data_dir"]
    if not params.get("spec") or "dataset" not in inputs:
        raise PipelineError("promote: detection needs the spec parameter and the dataset input "
                            "(the convert stage's TFRecords)")
    spec = tlt_spec.loads(params["spec"], "detection")
    use_convert_output(spec, inputs["dataset"])  # fold 0 is the held-out set
    meta = read_metadata(inputs["dataset"])
    source = (meta.get("parents") or [{}])[0].get("uri", inputs["dataset"])
    fold = meta.get("validation_fold", spec.dataset_config.validation_fold)
    return spec, f"validation fold {fold} of {source} ({meta.get('spec_digest', 'no digest')})"


def _model_shape(model: Path):
    """The architecture and input size the model file's metadata records (None: not recorded)."""
    from tlt.io.modelfile import read_model_metadata, resolve_key
    from tlt.retraining.model_match import shape_of_metadata

    return shape_of_metadata(read_model_metadata(str(model), key=resolve_key(None)))


def _spec_for(spec, shape):
    """A copy of the detection spec whose network input is the model's own: each model is scored
    at the size it was trained for; predictions are mapped back to source pixels, so models of
    different input sizes are scored on the same frames and ground truth."""
    if spec is None or shape is None:
        return spec
    scoring = type(spec)()
    scoring.CopyFrom(spec)
    pre = scoring.augmentation_config.preprocessing
    pre.output_image_channel, pre.output_image_height, pre.output_image_width = shape.input_dims
    return scoring


def _score(params: Mapping[str, Any], spec, model: Path, shape) -> float:
    """The model's accuracy or mAP (both in %) on the held-out set, at its own input size
    (``shape``, from its metadata; a classifier's evaluation reads it there itself)."""
    from tlt.io.modelfile import resolve_key
    from tlt.stages import evaluate as evaluate_stage

    if params["task"] == "classification":
        result = evaluate_stage.run_classification(str(model), params["data_dir"],
                                                   key=resolve_key(None),
                                                   batch_size=int(params["batch_size"]))
        return 100.0 * float(result.metrics["accuracy"])
    evaluation = evaluate_stage.run_detection(_spec_for(spec, shape), str(model),
                                              key=resolve_key(None),
                                              batch_size=int(params["batch_size"]))
    return float(evaluation.results.mean_ap.get("combined") or 0.0)


def _score_both(params: Mapping[str, Any], spec, inputs: Mapping[str, str],
                has_champion: bool) -> dict[str, Any]:
    """Both models' scores and shapes: ``{"new", "old", "new_model", "old_model"}`` (the
    champion's None on a first run)."""
    challenger = model_file(inputs["challenger"])
    out: dict[str, Any] = {"new_model": _model_shape(challenger), "old": None, "old_model": None}
    out["new"] = _score(params, spec, challenger, out["new_model"])
    if has_champion:
        champion_file = model_file(inputs["champion"])
        out["old_model"] = _model_shape(champion_file)
        out["old"] = _score(params, spec, champion_file, out["old_model"])
    if out["old_model"] and out["new_model"] and out["old_model"] != out["new_model"]:
        _log.warning("the challenger (%s) is another model than the champion (%s): each was "
                     "scored at its own input size on the same held-out frames",
                     out["new_model"], out["old_model"])
    return out


def _lineage(inputs: Mapping[str, str], challenger_meta: Mapping[str, Any],
             model) -> dict[str, Any]:
    """What the published version records of its training data (the next data gate reads it)
    and of its model (the next champion stage checks finetune_spec against it)."""
    counts = None
    gate_json = Path(inputs.get("data_report", "")) / "data_gate.json"
    if "data_report" in inputs and gate_json.is_file():
        counts = json.loads(gate_json.read_text(encoding="utf-8"))["details"]["class_counts"]
    return {"class_counts": counts, "classes": challenger_meta.get("classes"),
            "training": {k: challenger_meta.get(k) for k in ("stage", "epochs", "final_metrics")},
            "parents": challenger_meta.get("parents") or [],
            "model_config": model.to_dict() if model else {}}


def promote(params: Mapping[str, Any], inputs: Mapping[str, str],
            outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Score champion and challenger on the same held-out set, then `tlt.stages.promote`."""
    from tlt.artifacts import read_metadata, write_metadata
    from tlt.gates.metrics import default_metric
    from tlt.gates.promotion import promotion_report_html
    from tlt.io.atomic import atomic_write_text
    from tlt.stages import promote as promote_stage

    metric = default_metric(params["task"])
    spec, held_out = _held_out(params, inputs)
    champ = read_metadata(inputs["champion"])
    scores = _score_both(params, spec, inputs, bool(champ.get("has_champion")))
    _log.info("held-out %s: challenger %s %.4f, champion %s", held_out, metric, scores["new"],
              scores["old"])
    outcome = promote_stage.run(
        [model_file(inputs["challenger"])], registry_uri=params["registry_uri"],
        model_name=params["model_name"], challenger_metric=scores["new"],
        champion_metric=scores["old"], champion_version=champ.get("version") or None,
        metric=metric, margin=float(params["margin"]), held_out_set=held_out, task=params["task"],
        alias=params["alias"],
        metadata=_lineage(inputs, read_metadata(inputs["challenger"]), scores["new_model"]))
    d = outcome.decision
    facts = {"model": params["model_name"], "registry": params["registry_uri"],
             "held-out set": held_out, f"challenger {metric}": d.challenger,
             f"champion {metric}": d.champion, "margin": d.margin,
             "challenger model": str(scores["new_model"] or "not recorded"),
             "champion model": str(scores["old_model"] or ("none" if d.champion is None
                                                           else "not recorded")),
             "challenger version": outcome.version, f"{params['alias']} now": outcome.production}
    atomic_write_text(outputs["report"], promotion_report_html(d, facts))
    folder = Path(outputs["decision"])
    folder.mkdir(parents=True, exist_ok=True)
    write_metadata(folder, "promote", summary=outcome.summary(), version=outcome.version,
                   production=outcome.production, decision=d.to_dict(), held_out_set=held_out)
    scalars = {"promoted": float(d.promote), f"challenger_{metric}": d.challenger,
               "margin": d.margin, "first_run": float(d.first_run)}
    if d.champion is not None:
        scalars[f"champion_{metric}"] = d.champion
    return {"decision": scalars, "report": {"stage": "promote", "summary": outcome.summary()}}


#: Registry key -> adapter, for every stage of `RETRAINING_STAGES`.
RETRAINING_ADAPTERS: dict[str, Adapter] = {
    "champion": champion,
    "data_gate": data_gate,
    "promote": promote,
}
