"""Benchmark: Keras predict vs ONNX Runtime fp32 vs ONNX Runtime int8 engines, against the sgemm limit.

Two trained models, each exported with ``tlt.export`` (fp32, and int8 with a calibration cache from
its training images) and built with ``tlt.engines.build_engine`` into ONNX Runtime fp32 and int8
engines (tlt-converter's CPU backend):

- classification: the step-2 digits ResNet-10 (1x32x32, 10 classes), trained and scored as
  ``bench/classification.py`` does (its data set and spec, fewer epochs);
- detection: the step-3 synthetic DetectNet_v2 ResNet-10 (3x128x240, car + pedestrian), trained
  as ``bench/detection_quality.py`` does (its data set, convert and spec, fewer frames/epochs).

Every candidate runs on the same in-memory validation tensors (the numpy pixels the deployed
evaluation feeds an engine) in the same process. The detection mAP is scored on
``--det-score-frames`` frames of the same generator with another seed, none of them trained on:
the 32 validation frames are timed, but on them one object moves an AP column by several points. Timing is interleaved: each round times one
numpy sgemm and one full pass of every candidate over its validation set, the order rotating per
round, so all see the same machine load; the best round is reported (and the median). Threads:
ONNX Runtime intra-op = cores for both engines, with the engines' default of no spin-waiting
(`tlt.engines.onnxruntime_engine.OnnxRuntimeEngine`), TensorFlow intra-op = cores and inter-op
= 1 (ONNX Runtime's sequential executor runs one node at a time too). The int8 engines are what
tlt-converter builds: batch norm folded into the convolutions, per-channel 7-bit weights, uint8
activations (the fast u8 x s8 path on AVX2) and, by tlt-converter's default
``--int8_float_tail auto``, the last residual sum and the 1x1 head kept fp32, for the detector also
the two convolutions feeding that sum. "ort int8 head" is ``--int8_float_tail head`` (those
convolutions int8 too: faster, less accurate; for the classifier the default's own engine).

Physical limit: the float32 matrix-multiply rate of numpy's BLAS (2 n^3 flops per n x n product).
Model FLOPs are counted from the fp32 ONNX graph after shape inference: 2 x MACs of Conv, Gemm and
MatMul per image (batch norm is folded into the convolutions; activations, pooling and adds are
not counted). Achieved GFLOP/s = FLOPs x images/s.

    .venv/bin/python bench/engine.py [--quick] [--rounds 7] [--cls-epochs 4] [--det-frames 160]
        [--det-epochs 16] [--det-score-frames 480] [--work DIR]

Targets (issue 9): ONNX Runtime fp32 >= 0.9 of the sgemm rate; int8 >= 2x fp32 with <= 1 pt loss
of accuracy / mAP. The last line printed is the int8/fp32 speed ratio (the lower of the two models).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # reuse the data sets and specs of the sibling benchmarks

import classification as cls_bench  # noqa: E402
import detection_quality as det_bench  # noqa: E402

CORES = os.cpu_count() or 1
SGEMM_N = 2048


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny training budget and 2 rounds (checks the script works)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7, quick 2)")
    parser.add_argument("--cls-epochs", type=int, default=None, help="digits epochs (5, quick 1)")
    parser.add_argument("--det-frames", type=int, default=None,
                        help="synthetic detection frames, 20 %% validate (160, quick 60)")
    parser.add_argument("--det-epochs", type=int, default=None, help="detection epochs (16, quick 1)")
    parser.add_argument("--det-score-frames", type=int, default=None,
                        help="unseen frames (another seed) the detection mAP is scored on (480, "
                             "quick 40): on the 32 validation frames one object moves a column "
                             "by several points")
    parser.add_argument("--det-width", type=int, default=240)
    parser.add_argument("--det-height", type=int, default=128)
    parser.add_argument("--cls-batch", type=int, default=32, help="classification batch")
    parser.add_argument("--det-batch", type=int, default=8, help="detection batch")
    parser.add_argument("--work", default=None,
                        help="work folder; trained models found there are reused (default: new temp)")
    args = parser.parse_args(argv)
    quick = {"rounds": 2, "cls_epochs": 1, "det_frames": 60, "det_epochs": 1, "det_score_frames": 40}
    full = {"rounds": 7, "cls_epochs": 4, "det_frames": 160, "det_epochs": 16,
            "det_score_frames": 480}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# --------------------------------------------------------------------------- machine


def _configure_tensorflow() -> str:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(CORES)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf.__version__


def _blas_summary() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        import io
        from contextlib import redirect_stdout

        buffer = io.StringIO()
        with redirect_stdout(buffer):
            np.show_config()
        return " ".join(buffer.getvalue().split())[:400]
    rows = [f"{i.get('prefix')}: {i.get('internal_api')} {i.get('version')} "
            f"({i.get('architecture')} kernels, {i.get('num_threads')} threads)"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                      "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ}
    return f"{'; '.join(rows) or 'none found'}; env {env or 'unset'}"


def _cpu_summary() -> str:
    name, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"]
    return f"{name}; " + " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in wanted)


def _sgemm_operands(n: int = SGEMM_N):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)


def _sgemm_gflops(a, b, repeat: int = 3) -> float:
    """Best of ``repeat`` n x n float32 products, in GFLOP/s (2 n^3 flops each)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        np.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * a.shape[0] ** 3 / best / 1e9


# --------------------------------------------------------------------------- FLOPs


def onnx_flops(onnx_bytes: bytes) -> tuple[int, dict[str, int]]:
    """FLOPs per image (2 x MACs of Conv, ConvTranspose, Gemm, MatMul) of an ONNX graph.

    Returns:
        ``(flops, {op type: node count})``.
    """
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    for tensor in model.graph.input:  # batch 1 so every shape is concrete
        dims = tensor.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].Clear()
            dims[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    graph = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    shapes.update({t.name: list(t.dims) for t in graph.initializer})
    weights = {t.name: list(t.dims) for t in graph.initializer}
    macs, counts = 0, {}
    for node in graph.node:
        count = _node_macs(node, shapes, weights)
        if count is not None:
            macs += count
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return 2 * macs, counts


def _node_macs(node, shapes, weights) -> int | None:
    def size(name):
        dims = shapes.get(name)
        if not dims or any(d <= 0 for d in dims):
            raise ValueError(f"{node.op_type} {node.name}: no static shape for {name}")
        return int(np.prod(dims)), dims

    if node.op_type == "Conv":  # W: [Cout, Cin/group, kh, kw]
        out, _ = size(node.output[0])
        return out * int(np.prod(size(node.input[1])[1][1:]))
    if node.op_type == "ConvTranspose":  # W: [Cin, Cout/group, kh, kw]: every input feeds a kernel
        inp, _ = size(node.input[0])
        return inp * int(np.prod(size(node.input[1])[1][1:]))
    if node.op_type == "MatMul" and len(weights.get(node.input[1], [])) == 2:
        # x @ W with a constant [K, N] weight (the classifier head): one row per image at batch 1,
        # whatever the Reshape before it (its target shape is computed, so inference may miss it).
        known = shapes.get(node.input[0]) or []
        rows = int(np.prod(known[:-1])) if known and all(d > 0 for d in known) else 1
        return rows * int(np.prod(weights[node.input[1]]))
    if node.op_type in ("Gemm", "MatMul"):
        out, _ = size(node.output[0])
        _, a = size(node.input[0])
        trans_a = any(att.name == "transA" and att.i for att in node.attribute)
        return out * (a[-2] if trans_a else a[-1])
    return None


# --------------------------------------------------------------------------- models


def _export_and_build(model: Path, out: Path, dims, cal_images: Path, batch: int) -> dict:
    """fp32 / int8 exports of ``model`` and their ONNX Runtime engines (as tlt-converter)."""
    from tlt.engines import BuildOptions, build_engine
    from tlt.export import ExportOptions, export_model

    out.mkdir(parents=True, exist_ok=True)
    cal = out / "cal.bin"
    images = sum(1 for p in cal_images.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    batches = max(1, min(10, images // 8))  # up to 80 calibration images
    fp32 = export_model(str(model), None, ExportOptions(output=str(out / "fp32.onnx"),
                                                        max_batch_size=batch)).output
    int8 = export_model(str(model), None, ExportOptions(
        output=str(out / "int8.onnx"), data_type="int8", cal_data_file=str(cal_images),
        cal_cache_file=str(cal), batches=batches, cal_batch_size=8, max_batch_size=batch)).output
    engines = {}
    # int8: tlt-converter's default (--int8_float_tail auto: for the detector the last residual
    # sum, its input convolutions and the head fp32; for the classifier, whose pooling averages
    # the 8-bit steps away, only the sum and the head) and --int8_float_tail head, the faster
    # choice for the detector (for the classifier the same engine as the default).
    for name, source, precision, tail in (("fp32", fp32, "fp32", "auto"),
                                          ("int8", int8, "int8", "auto"),
                                          ("int8 head", int8, "int8", "head")):
        path = out / f"{name.replace(' ', '-')}.engine"
        build_engine(source, None, BuildOptions(input_dims=tuple(dims), engine_path=str(path),
                                                cache_file=str(cal), precision=precision,
                                                max_batch_size=batch, backend="onnxruntime",
                                                int8_float_tail=tail))
        engines[name] = path
    return {"fp32_export": Path(fp32), **engines}


def _train_once(work: Path, name: str, train) -> tuple[Path, str]:
    """The trained model of ``work/name`` (reused when a previous run finished it) and how long
    its training took."""
    marker = work / name / "trained.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        return Path(done["model"]), f"{done['seconds']:.0f} s (reused)"
    started = time.monotonic()
    model = Path(train(work / name))
    seconds = time.monotonic() - started
    marker.write_text(json.dumps({"model": str(model), "seconds": seconds}))
    return model, f"{seconds:.0f} s"


def _train_digits(folder: Path, root: Path, epochs: int, batch: int) -> str:
    from tlt import spec as spec_loader
    from tlt.stages import train

    spec = spec_loader.loads(cls_bench._spec_text(root, epochs, batch, 0.02), "classification")
    return train.run(spec, folder / "results", progress=False).model_path


def _train_detector(folder: Path, spec) -> str:
    from tlt.stages import train

    return train.run(spec, folder / "results", task="detection", progress=False).model_path


def _detection_spec(work: Path, args):
    """Synthetic frames, converted to TFRecords once, and the detection_quality spec on them."""
    from tlt.data.synthetic import make_detection_dataset
    from tlt.stages import convert

    folder = work / "det"
    root, records = folder / "kitti", folder / "tfrecords"
    if not (folder / "converted").is_file():
        make_detection_dataset(root, num_frames=args.det_frames, width=args.det_width,
                               height=args.det_height, seed=det_bench.SEED, overwrite=True)
        (folder / "convert.txt").write_text(det_bench._CONVERT.format(root=root), encoding="utf-8")
        convert.run(str(folder / "convert.txt"), str(records), output_name="train",
                    num_workers=1, progress=False)
        (folder / "converted").write_text("ok\n")
    options = Namespace(width=args.det_width, height=args.det_height, epochs=args.det_epochs,
                        batch=args.det_batch, lr=5e-3, no_autoweighting=False)
    return det_bench._build_spec(options, f"{records}/train*", str(root)), root


# --------------------------------------------------------------------------- candidates


class _EnginePredictor:
    """``predict_on_batch`` of an engine, outputs in the order the evaluation expects."""

    def __init__(self, engine, names):
        self.engine, self.names = engine, names

    def predict_on_batch(self, images):
        out = self.engine.run(images)
        return [out[n] for n in self.names]


def _candidates(model_path: Path, built: dict, batch: int) -> dict:
    """``{name: (run(x) -> outputs list, predictor)}`` for Keras, ORT fp32 and the two ORT int8."""
    from tlt.engines import load_engine
    from tlt.io.modelfile import load_keras_model

    keras_model, _ = load_keras_model(str(model_path), compile=False)
    found = {"keras": (lambda x: _as_list(keras_model.predict(x, batch_size=batch, verbose=0)),
                       keras_model)}
    for precision in ("fp32", "int8", "int8 head"):
        engine = load_engine(built[precision], threads=CORES)
        names = sorted(engine.output_names, key=lambda n: (not n.startswith("output_cov"), n))
        predictor = _EnginePredictor(engine, names)
        found[f"ort {precision}"] = (predictor.predict_on_batch, predictor)
    return found


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _timed_rounds(tasks: dict, rounds: int, sgemm) -> tuple[dict, list[float]]:
    """Interleaved rounds: per round one sgemm and one pass of every (task, candidate), rotating
    the order so no candidate always runs first. Returns ``{(task, name): [images/s]}``, sgemm."""
    jobs = [(task, name, run, x) for task, (x, candidates) in tasks.items()
            for name, (run, _) in candidates.items()]
    for _, _, run, x in jobs:  # warm-up: graph tracing, ORT arena allocation
        run(x)
    speeds = {(task, name): [] for task, name, _, _ in jobs}
    gemm = []
    for r in range(rounds):
        gemm.append(_sgemm_gflops(*sgemm))
        for task, name, run, x in jobs[r % len(jobs):] + jobs[:r % len(jobs)]:
            start = time.perf_counter()
            run(x)
            speeds[(task, name)].append(len(x) / (time.perf_counter() - start))
        logging.info("round %d/%d done", r + 1, rounds)
    return speeds, gemm


# --------------------------------------------------------------------------- quality


def _digits_accuracy(candidates: dict, x, labels) -> dict:
    """``{name: {"top-1": accuracy in percent}}``."""
    return {name: {"top-1": 100.0 * float(np.mean(np.argmax(run(x)[0], axis=1) == labels))}
            for name, (run, _) in candidates.items()}


def _detection_map(candidates: dict, spec, frames: list, batch: int) -> dict:
    """``{name: {"voc <bucket>" / "kitti <bucket>": mAP in points or None}}``."""
    from tlt.evaluation.detection import predict_validation_frames
    from tlt.metrics.detection import build_evaluation_settings, evaluate_detections

    scores = {}
    for name, (_, predictor) in candidates.items():
        _, truth, found = predict_validation_frames(predictor, spec, batch_size=batch, frames=frames)
        scores[name] = {}
        for mode in ("voc", "kitti"):
            result = evaluate_detections(truth, found, build_evaluation_settings(spec, mode=mode))
            scores[name].update({f"{mode} {b}": v for b, v in result.mean_ap.items()})
    return scores


# --------------------------------------------------------------------------- report


def _report(task: str, flops: int, speeds: dict, gemm_best: float, quality: dict, unit: str) -> float:
    """Print one model's table; return its int8/fp32 speed ratio."""
    best = {name: max(v) for (t, name), v in speeds.items() if t == task}
    median = {name: statistics.median(v) for (t, name), v in speeds.items() if t == task}
    for name in best:
        gflops = flops * best[name] / 1e9
        print(f"  {name:13s} {best[name]:9.1f} images/s (median {median[name]:8.1f})  "
              f"{gflops:6.1f} GFLOP/s = {gflops / gemm_best:.3f} of sgemm   {unit} "
              f"{_quality_text(quality[name])}")
    ratio = best["ort int8"] / best["ort fp32"]
    fp32_share = flops * best["ort fp32"] / 1e9 / gemm_best
    loss = _worst_drop(quality["ort fp32"], quality["ort int8"])
    keras_gap = _worst_drop(quality["keras"], quality["ort fp32"])
    print(f"  ort fp32 / keras speed {best['ort fp32'] / best['keras']:.2f}; int8 / fp32 speed "
          f"{ratio:.2f} (median {median['ort int8'] / median['ort fp32']:.2f}); {unit} worst drop "
          f"over the columns: int8 vs fp32 {loss:+.2f} pt, fp32 vs keras {keras_gap:+.2f} pt")
    print(f"  targets: fp32 >= 0.9 of sgemm: {_met(fp32_share >= 0.9)} ({fp32_share:.3f}); "
          f"int8 >= 2x fp32: {_met(ratio >= 2.0)} ({ratio:.2f}); "
          f"int8 loss <= 1 pt: {_met(loss <= 1.0)} ({loss:.2f} pt)")
    head_ratio = best["ort int8 head"] / best["ort fp32"]
    print(f"  --int8_float_tail head (only the last sum and the head fp32): {head_ratio:.2f}x fp32 "
          f"(median {median['ort int8 head'] / median['ort fp32']:.2f}), {unit} worst drop vs fp32 "
          f"{_worst_drop(quality['ort fp32'], quality['ort int8 head']):+.2f} pt")
    return ratio


def _worst_drop(reference: dict, other: dict) -> float:
    """Largest ``reference - other`` over the columns both have a value for (0 if none)."""
    drops = [reference[k] - other[k] for k in reference
             if reference[k] is not None and other.get(k) is not None]
    return max(drops, default=0.0)


def _quality_text(columns: dict) -> str:
    return ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in columns.items())


def _met(flag: bool) -> str:
    return "met" if flag else "NOT met"


def _flops_text(flops: int, counts: dict) -> str:
    ops = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    return f"{flops / 1e9:.4f} GFLOP/image ({ops})"


# --------------------------------------------------------------------------- main


def _prepare_digits(work: Path, args) -> dict:
    from tlt.io.exportfile import load_export

    root = cls_bench._dataset()
    model, took = _train_once(work, "cls", lambda f: _train_digits(f, root, args.cls_epochs,
                                                                   args.cls_batch))
    built = _export_and_build(model, work / "cls" / "engines", (1, cls_bench.SIZE, cls_bench.SIZE),
                              root / "train", args.cls_batch)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    x, y = cls_bench._load_split(root / "val", classes)
    flops = onnx_flops(load_export(str(built["fp32_export"])).onnx_bytes)
    return {"model": model, "built": built, "x": x, "labels": np.argmax(y, axis=1), "flops": flops,
            "training": took}


def _scoring_spec(work: Path, spec, args):
    """``spec`` pointed at ``--det-score-frames`` new frames (seed + 1), all in validation fold 0."""
    from tlt.data.synthetic import make_detection_dataset
    from tlt.stages import convert

    folder = work / "det-score" / str(args.det_score_frames)
    root, records = folder / "kitti", folder / "tfrecords"
    if not (folder / "converted").is_file():
        make_detection_dataset(root, num_frames=args.det_score_frames, width=args.det_width,
                               height=args.det_height, seed=det_bench.SEED + 1, overwrite=True)
        text = det_bench._CONVERT.format(root=root).replace("val_split: 20", "val_split: 100")
        (folder / "convert.txt").write_text(text, encoding="utf-8")
        convert.run(str(folder / "convert.txt"), str(records), output_name="score",
                    num_workers=1, progress=False)
        (folder / "converted").write_text("ok\n")
    scoring = type(spec)()
    scoring.CopyFrom(spec)
    source = scoring.dataset_config.data_sources[0]
    source.tfrecords_path, source.image_directory_path = f"{records}/score*", str(root)
    scoring.dataset_config.validation_fold = 0
    return scoring


def _prepare_detection(work: Path, args) -> dict:
    from tlt.data.detection_frames_numpy import iter_validation_frames_numpy
    from tlt.data.classification_input import PREPROCESSING
    from tlt.io.exportfile import load_export

    spec, root = _detection_spec(work, args)
    model, took = _train_once(work, "det", lambda f: _train_detector(f, spec))
    dims = (3, args.det_height, args.det_width)
    built = _export_and_build(model, work / "det" / "engines", dims, root / "images", args.det_batch)
    meta = load_export(str(built["fp32_export"]))
    preprocessing = meta.metadata.get("preprocessing") or PREPROCESSING
    frames = list(iter_validation_frames_numpy(spec, batch_size=args.det_batch,
                                               preprocessing=preprocessing))
    scoring = _scoring_spec(work, spec, args)
    scored = list(iter_validation_frames_numpy(scoring, batch_size=args.det_batch,
                                               preprocessing=preprocessing))
    x = np.concatenate([f.images for f in frames])
    return {"model": model, "built": built, "x": x, "frames": scored, "spec": scoring,
            "flops": onnx_flops(meta.onnx_bytes), "training": took,
            "scored": sum(len(f.images) for f in scored)}


def main(argv=None) -> int:
    """Run the benchmark (see the module docstring); the last line is the int8/fp32 ratio."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    tf_version = _configure_tensorflow()
    import onnxruntime

    load_start = os.getloadavg()
    started = time.monotonic()
    work = Path(args.work or tempfile.mkdtemp(prefix="tlt-bench-engine-"))
    work.mkdir(parents=True, exist_ok=True)
    digits, det = _prepare_digits(work, args), _prepare_detection(work, args)
    prepared = time.monotonic()
    cls_cands = _candidates(digits["model"], digits["built"], args.cls_batch)
    det_cands = _candidates(det["model"], det["built"], args.det_batch)
    accuracy = _digits_accuracy(cls_cands, digits["x"], digits["labels"])
    maps = _detection_map(det_cands, det["spec"], det["frames"], args.det_batch)
    load_timed = os.getloadavg()
    speeds, gemm = _timed_rounds({"cls": (digits["x"], cls_cands), "det": (det["x"], det_cands)},
                                 args.rounds, _sgemm_operands())
    load_end = os.getloadavg()

    print(f"machine: {CORES} cores, {_cpu_summary()}")
    print(f"software: tensorflow {tf_version} (intra-op {CORES}, inter-op 1), onnxruntime "
          f"{onnxruntime.__version__} (intra-op {CORES}), numpy {np.__version__}")
    print(f"numpy BLAS: {_blas_summary()}")
    print(f"load average (1/5/15 min): start {_load(load_start)}, timed part start "
          f"{_load(load_timed)}, end {_load(load_end)}")
    print(f"budget: digits {args.cls_epochs} epochs; detection {args.det_frames} frames at "
          f"{args.det_width}x{args.det_height}, {args.det_epochs} epochs; {args.rounds} interleaved "
          f"rounds; training {digits['training']} + {det['training']}; preparation "
          f"{prepared - started:.0f} s, total {time.monotonic() - started:.0f} s")
    print(f"sgemm {SGEMM_N}x{SGEMM_N} float32: best {max(gemm):.1f} GFLOP/s (median "
          f"{statistics.median(gemm):.1f}, best of 3 per round)")
    flops, counts = digits["flops"]
    print(f"\nclassification: digits ResNet-10 1x32x32, {len(digits['x'])} val images, batch "
          f"{args.cls_batch}; {_flops_text(flops, counts)}")
    cls_ratio = _report("cls", flops, speeds, max(gemm), accuracy, "accuracy %:")
    flops, counts = det["flops"]
    print(f"\ndetection: DetectNet_v2 ResNet-10 3x{args.det_height}x{args.det_width}, timed on "
          f"{len(det['x'])} val frames, mAP on {det['scored']} unseen frames, batch "
          f"{args.det_batch}; {_flops_text(flops, counts)}")
    det_ratio = _report("det", flops, speeds, max(gemm), maps, "mAP %:")
    print(f"\nratio int8/fp32: {min(cls_ratio, det_ratio):.2f} (classification {cls_ratio:.2f}, "
          f"detection {det_ratio:.2f}; lower of the two)")
    return 0


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
