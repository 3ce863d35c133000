"""Stage adapters: orchestration parameters and artifact folders -> one `tlt.stages` call.

Each adapter has the signature ``adapter(params, inputs, outputs) -> {output name: metadata}``:
``params`` maps parameter names to typed values, ``inputs``/``outputs`` map artifact names to local
folders. The returned metadata is what the Kubeflow UI shows on each output artifact. KFP
components and Argo containers both reach the stages only through these functions.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Mapping

from tlt.errors import PipelineError

__all__ = ["ADAPTERS", "get_adapter", "convert"]

Adapter = Callable[[Mapping[str, Any], Mapping[str, str], Mapping[str, str]], dict[str, dict[str, Any]]]


def convert(params: Mapping[str, Any], inputs: Mapping[str, str],
            outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.convert` on a prototxt spec; describe the TFRecords for the UI.

    Args:
        params: ``spec`` (prototxt text), ``dataset_root`` (URI or "" to keep the spec's) and
            ``validation_fold`` (-1 for none).
        inputs: unused (convert reads the raw data set named by the spec).
        outputs: ``dataset``: the folder to write the shards and ``metadata.json`` to.

    Returns:
        ``{"dataset": {...}}`` with frame, shard and per-fold class counts.
    """
    from tlt import spec as tlt_spec
    from tlt.stages import convert as convert_stage

    spec = tlt_spec.loads(params["spec"], "dataset_export")
    root = params.get("dataset_root")
    if root:
        old_root = spec.kitti_config.root_directory_path
        spec.kitti_config.root_directory_path = root
        # The image root recorded for training moves with the data set unless the spec chose another.
        if spec.image_directory_path in ("", old_root):
            spec.image_directory_path = root
    fold = int(params.get("validation_fold", -1))
    # Progress bars only help a person watching a terminal; pod logs would fill with \r updates.
    result = convert_stage.run(spec, outputs["dataset"], validation_fold=None if fold < 0 else fold,
                               progress=sys.stderr.isatty())
    return {"dataset": {
        "stage": "convert",
        "num_frames": int(result.num_frames),
        "num_shards": len(result.shards),
        "frames_per_fold": _jsonable(result.frames_per_fold),
        "validation_fold": -1 if result.validation_fold is None else int(result.validation_fold),
        "class_counts": _jsonable(result.class_counts),
        "skipped_frames": len(result.skipped_frames),
        "skipped_objects": int(result.skipped_objects),
        "root_directory_path": spec.kitti_config.root_directory_path,
    }}


#: Registry key -> adapter. Every `tlt.orchestration.registry.STAGES` key has one (a test checks).
ADAPTERS: dict[str, Adapter] = {
    "convert": convert,
}


def get_adapter(stage: str) -> Adapter:
    """The adapter of ``stage``.

    Raises:
        PipelineError: when the stage has no adapter.
    """
    try:
        return ADAPTERS[stage]
    except KeyError:
        raise PipelineError(f"stage {stage!r} has no adapter: expected one of {', '.join(ADAPTERS)}") from None


def _jsonable(value: Any) -> Any:
    """Plain dicts/lists/ints/floats/strings, so KFP can store the value as artifact metadata."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int) or hasattr(value, "__index__"):
        return int(value)
    if isinstance(value, float) or hasattr(value, "__float__"):
        return float(value)
    return str(value)
