"""What the model-stage adapters share: JSON-able artifact metadata, an export's metadata, and the
convert stage's TFRecords as a detection spec's data source."""

from __future__ import annotations

from typing import Any, Mapping

from tlt.errors import PipelineError

__all__ = ["jsonable", "read_artifact_meta", "use_convert_output"]


def jsonable(value: Any) -> Any:
    """Plain dicts/lists/ints/floats/strings, so KFP can store the value as artifact metadata."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int) or hasattr(value, "__index__"):
        return int(value)
    if isinstance(value, float) or hasattr(value, "__float__"):
        return float(value)
    return str(value)


def use_convert_output(spec, dataset_dir: str) -> None:
    """Point a detection spec's data sources at the convert stage's TFRecords folder (fold 0
    validates when the spec validates on a fold)."""
    del spec.dataset_config.data_sources[:]
    source = spec.dataset_config.data_sources.add()
    source.tfrecords_path = f"{dataset_dir}/tfrecords-fold-*"
    if spec.dataset_config.WhichOneof("dataset_split_type") == "validation_data_source":
        spec.dataset_config.validation_fold = 0


def read_artifact_meta(folder: str) -> dict[str, Any]:
    """The metadata.json of an export stage's output folder.

    Raises:
        PipelineError: the folder has no metadata.json (it is not an export output).
    """
    from tlt.artifacts import read_metadata

    meta = read_metadata(folder)
    if not meta:
        raise PipelineError(f"{folder}: no metadata.json (not an output of the export stage)")
    return meta
