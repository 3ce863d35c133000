"""Adapter of the export stage: a trained model -> `tlt.stages.export` -> ONNX (.etlt), the int8
calibration cache and the DeepStream and Triton configurations, with calibration images taken from
the convert stage's TFRecords or a folder of images."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Mapping

from tlt.errors import PipelineError
from tlt.orchestration.adapters_common import jsonable
from tlt.orchestration.model_cards import model_file

__all__ = ["export"]


def export(params: Mapping[str, Any], inputs: Mapping[str, str],
           outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run `tlt.stages.export`: ONNX (.etlt under TLT_KEY), the int8 calibration cache and the
    DeepStream and Triton configurations, all in the ``export`` folder.

    Calibration images (``data_type`` int8): detection frames decoded from the convert stage's
    TFRecords (input ``dataset``), or classification images from ``cal_data_dir``.
    """
    from tlt.artifacts import write_metadata
    from tlt.io.modelfile import resolve_key
    from tlt.stages import export as export_stage

    key = resolve_key(None)
    out = Path(outputs["export"])
    out.mkdir(parents=True, exist_ok=True)
    source = model_file(inputs["model"])
    name = "model.etlt" if key else "model.onnx"
    needed = int(params["batches"]) * int(params["cal_batch_size"])
    with _calibration_images(params, inputs, needed) as cal_dir:
        result = export_stage.run(
            str(source), key=key, output=str(out / name), data_type=params["data_type"],
            cal_data_file=cal_dir, cal_cache_file=str(out / "cal.bin"),
            batches=int(params["batches"]), cal_batch_size=int(params["cal_batch_size"]),
            max_batch_size=int(params["max_batch_size"]), gen_ds_config=True, gen_triton_config=True)
    fields = _export_fields(result, out, name, encrypted=bool(key))
    write_metadata(out, "export", parents=[{"uri": str(source)}], **fields)
    return {"export": {"stage": "export", **fields}}


def _export_fields(result, out: Path, name: str, *, encrypted: bool) -> dict[str, Any]:
    """The export artifact's metadata: format, precision, shapes, classes and the files written."""
    meta = result.metadata
    return jsonable({
        "model": name, "format": "onnx", "encrypted": encrypted, "task": meta.get("task"),
        "precision": meta.get("precision"), "input_dims": meta.get("input_dims"),
        "output_names": meta.get("output_names"), "classes": meta.get("classes", []),
        "size_bytes": (out / name).stat().st_size,
        "calibration_cache": Path(result.cal_cache_file).name if result.cal_cache_file else "",
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())})


@contextlib.contextmanager
def _calibration_images(params: Mapping[str, Any], inputs: Mapping[str, str],
                        needed: int) -> Iterator[str | None]:
    """A local folder of calibration images for an int8 export (None for other data types)."""
    import tempfile

    from tlt.io import storage

    if params["data_type"] != "int8":
        yield None
    elif "dataset" in inputs:
        with tempfile.TemporaryDirectory(prefix="tlt-calibration-") as tmp:
            _frames_to_images(inputs["dataset"], Path(tmp), needed)
            yield tmp
    elif params.get("cal_data_dir"):
        with storage.staged_input(params["cal_data_dir"]) as local:
            yield str(local)
    else:
        raise PipelineError("export: data_type int8 needs calibration images: connect the dataset "
                            "input (detection TFRecords) or set cal_data_dir (classification images)")


def _frames_to_images(dataset: str, folder: Path, needed: int) -> None:
    """Write the first ``needed`` frames of the TFRecord shards in ``dataset`` as image files."""
    from tlt.data.tfrecord import decode_example, read_records

    shards = sorted(p for p in Path(dataset).glob("*") if p.is_file() and not p.name.endswith(".json"))
    written = 0
    for shard in shards:
        for record in read_records(shard):
            ex = decode_example(record)
            ext = {b"jpeg": "jpg"}.get(ex["frame/format"][0], ex["frame/format"][0].decode("ascii"))
            (folder / f"{written:06d}.{ext}").write_bytes(ex["frame/encoded"][0])
            written += 1
            if written == needed:
                return
    # Fewer frames than needed: the export's calibration says how many it found and needs.
