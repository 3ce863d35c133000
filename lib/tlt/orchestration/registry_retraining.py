"""Registry entries of the scheduled retraining pipeline's own stages: fetching the registry's
champion, the data gate and promoting a challenger (their logic lives in `tlt.gates` and `tlt.io`;
convert, train and retrain are the model stages of `tlt.orchestration.registry`)."""

from __future__ import annotations

from tlt.orchestration.stage_types import QUICK_RETRY, Artifact, Param, Resources, Stage

__all__ = ["RETRAINING_STAGES"]

# Registry reads and writes and data checks: small containers, quick retries (a store hiccup).
_SMALL = Resources(cpu_request="500m", cpu_limit="1", memory_request="1Gi", memory_limit="2Gi")

_REGISTRY_URI = Param("registry_uri", str, "Model registry root (local folder, gs:// or s3://).")
_MODEL_NAME = Param("model_name", str, "Model name in the registry.")
_ALIAS = Param("alias", str, "Registry alias naming the champion.", "production")
_TASK = Param("task", str, "classification or detection.", "detection")

#: Retraining stages, in the order the component catalogue lists them.
RETRAINING_STAGES: tuple[Stage, ...] = (
    Stage(
        name="champion",
        cli="tlt-pull",
        description="Fetch the registry's production model (the champion) with its metrics and the "
                    "class counts of its training data; on a first run (no champion) only says so. "
                    "Refuses a finetune_spec whose model is not the champion's or train_spec's.",
        params=(
            _REGISTRY_URI, _MODEL_NAME, _ALIAS,
            Param("require_champion", bool, "Fail when the registry has no model under the alias "
                  "(instead of training the first one from the spec).", False),
            _TASK,
            Param("finetune_spec", str, "The spec that will fine-tune the champion: its model "
                  "(architecture, depth, input size) must be the champion's and train_spec's, "
                  "checked here before any data is converted; \"\" skips the check.", ""),
            Param("train_spec", str, "The spec a first run trains (compared with "
                  "finetune_spec); \"\" skips that comparison.", ""),
        ),
        outputs=(Artifact("champion", "Model", "The champion's model file and metadata.json "
                          "(has_champion, version, metrics, class_counts)."),),
        results=(Param("has_champion", bool, "True when the alias names a version."),),
        resources=_SMALL,
        retry=QUICK_RETRY,
        caching=False,  # the alias moves between runs: a cached answer would be a stale champion
    ),
    Stage(
        name="data_gate",
        cli="tlt-pipeline stage data_gate",
        description="Check new training data before training on it: malformed-label and "
                    "unreadable-image rates, classes missing or new and the class-balance shift "
                    "against the champion's training data; fails the run with a report.",
        params=(
            _TASK,
            Param("new_data_uri", str, "The new data (local folder, gs:// or s3:// prefix): a KITTI "
                  "tree for detection, one folder per class for classification."),
            Param("image_dir", str, "Detection: image folder under new_data_uri.", "images"),
            Param("label_dir", str, "Detection: label folder under new_data_uri.", "labels"),
            Param("image_extension", str, "Detection: image extension.", ".png"),
            Param("max_malformed_rate", float, "Highest accepted share of malformed label lines.",
                  0.05),
            Param("max_unreadable_rate", float, "Highest accepted share of unreadable images.", 0.05),
            Param("max_balance_shift", float, "Highest accepted class-balance shift (total "
                  "variation distance of the class shares, 0..1).", 0.2),
            Param("allow_missing_classes", bool, "Pass although a class of the champion's data "
                  "has no object.", False),
            Param("allow_new_classes", bool, "Pass although the data has classes the champion "
                  "never saw.", False),
        ),
        inputs=(Artifact("champion", "Model", "Output of the champion stage (its class counts); "
                         "without it the class checks are skipped.", optional=True),),
        outputs=(
            Artifact("report", "HTML", "The data gate's report: every check, its value, threshold "
                     "and reason, and both class tables."),
            Artifact("gate", "Metrics", "The checks as scalars and data_gate.json / .md (with the "
                     "new data's class counts)."),
        ),
        resources=_SMALL,
        retry=QUICK_RETRY,
        caching=False,  # the champion it compares with may have changed since
    ),
    Stage(
        name="promote",
        cli="tlt-pull --promote",
        description="Evaluate champion and challenger on the same held-out set, publish the "
                    "challenger as the next version and move the production alias to it only when "
                    "it is better by the margin; the report says why.",
        params=(
            _TASK,
            Param("spec", str, "Detection: experiment spec text (its evaluation settings); the data "
                  "sources become the dataset input's validation fold.", ""),
            Param("data_dir", str, "Classification: URI of the held-out images (one folder per "
                  "class).", ""),
            _REGISTRY_URI, _MODEL_NAME, _ALIAS,
            Param("margin", float, "Least improvement of the metric (mAP or accuracy, in points "
                  "of %) that promotes the challenger; a tie never does.", 1.0),
            Param("batch_size", int, "Images per evaluation batch.", 8),
        ),
        inputs=(
            Artifact("challenger", "Model", "The fine-tuned model (a train or retrain output)."),
            Artifact("champion", "Model", "Output of the champion stage."),
            Artifact("dataset", "Dataset", "Detection: TFRecords from the convert stage; both "
                     "models are scored on its validation fold.", optional=True),
            Artifact("data_report", "Metrics", "The data gate's output: the new data's class "
                     "counts, kept with the version as its lineage.", optional=True),
        ),
        outputs=(
            Artifact("report", "HTML", "The decision, its reason, both metrics, the margin and the "
                     "versions."),
            Artifact("decision", "Metrics", "promoted (1/0), both metrics and the margin; "
                     "decision.json."),
        ),
        retry=QUICK_RETRY,
        model_key=True,
        caching=False,  # publishing and moving the alias must happen on every run
    ),
)
