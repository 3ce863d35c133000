"""Benchmark: pruning (tlt-prune) then retraining, against the unpruned model, in both tasks.

Two models are trained once with L1 regularization (the guide's advice before pruning):

- classification: the step-2 digits set (``bench/classification.py``: 1,797 real 8x8 digits
  upscaled to 1x32x32, fixed stratified 80/20 split), ResNet-18;
- detection: the step-3 synthetic KITTI set (``bench/detection_quality.py``: its seed, convert
  and spec, fewer frames and epochs), ResNet-10 DetectNet_v2 on car and pedestrian.

For every threshold (0.1 .. 0.7) each model is pruned by ``tlt.stages.prune`` (the guide's other
defaults: max normalizer, union, granularity 8, at least 16 filters) and retrained for a fixed
budget through ``tlt.stages.retrain`` (the real path: the trainer keeps the pruned graph). Each
row gives the parameters kept, inference images/s of the retrained pruned model against the
unpruned one, and accuracy (digits, val split) or mAP (voc mode, validation fold) after
retraining against the unpruned model's.

Speed: every model predicts the same in-memory validation tensors with Keras on this CPU
(TensorFlow intra-op = cores, inter-op = 1). Rounds are interleaved: each round runs one pass of
every model of both tasks, the order rotating per round, so all see the same machine load; the
best round is reported (and the median).

    .venv/bin/python bench/prune.py [--quick] [--thresholds 0.1,0.2,...] [--rounds 5]
        [--cls-epochs 3] [--cls-retrain-epochs 1] [--cls-l1 3e-4] [--det-frames 160]
        [--det-epochs 16] [--det-retrain-epochs 3] [--det-l1 1e-5] [--work DIR]

Target (issue 8): some threshold removes >= 50 % of the parameters with <= 1 pt loss after
retraining and runs >= 1.5x faster. The last line printed is that threshold's speed ratio
pruned/unpruned (per task; the lower of the two).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # reuse the data sets, specs and timing of the sibling benchmarks

import classification as cls_bench  # noqa: E402
import engine as engine_bench  # noqa: E402

CORES = os.cpu_count() or 1
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny budget, thresholds 0.1 and 0.7 (checks the script works)")
    parser.add_argument("--thresholds", default=None,
                        help="comma-separated pruning thresholds (default 0.1..0.7)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (5, quick 2)")
    parser.add_argument("--cls-epochs", type=int, default=None, help="digits epochs (3, quick 1)")
    parser.add_argument("--cls-retrain-epochs", type=int, default=None,
                        help="digits retrain epochs per threshold (1, quick 1)")
    parser.add_argument("--cls-l1", type=float, default=3e-4, help="digits L1 weight")
    parser.add_argument("--cls-batch", type=int, default=32)
    parser.add_argument("--det-frames", type=int, default=None,
                        help="synthetic detection frames, 20 %% validate (160, quick 40)")
    parser.add_argument("--det-epochs", type=int, default=None, help="detection epochs (16, quick 1)")
    parser.add_argument("--det-retrain-epochs", type=int, default=None,
                        help="detection retrain epochs per threshold (3, quick 1)")
    parser.add_argument("--det-l1", type=float, default=1e-5, help="detection L1 weight")
    parser.add_argument("--det-width", type=int, default=240)
    parser.add_argument("--det-height", type=int, default=128)
    parser.add_argument("--det-batch", type=int, default=8)
    parser.add_argument("--work", default=None,
                        help="work folder; models trained there before are reused (default: temp)")
    args = parser.parse_args(argv)
    quick = {"rounds": 2, "cls_epochs": 1, "cls_retrain_epochs": 1, "det_frames": 40,
             "det_epochs": 1, "det_retrain_epochs": 1, "thresholds": "0.1,0.7"}
    full = {"rounds": 5, "cls_epochs": 3, "cls_retrain_epochs": 1, "det_frames": 160,
            "det_epochs": 16, "det_retrain_epochs": 3,
            "thresholds": ",".join(str(t) for t in THRESHOLDS)}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.thresholds = [float(t) for t in str(args.thresholds).split(",") if t.strip()]
    return args


# --------------------------------------------------------------------------- specs and models


def _copy(spec):
    copy = type(spec)()
    copy.CopyFrom(spec)
    return copy


def _digits_spec(args):
    from tlt import spec as spec_loader

    root = cls_bench._dataset()
    spec = spec_loader.loads(cls_bench._spec_text(root, args.cls_epochs, args.cls_batch, 0.02),
                             "classification")
    spec.model_config.n_layers = 18
    reg = spec.train_config.reg_config
    reg.type, reg.scope, reg.weight_decay = "L1", "Conv2D,Dense", args.cls_l1
    return spec, root


def _detection_spec(work: Path, args):
    spec, root = engine_bench._detection_spec(work, args)
    spec.training_config.regularizer.weight = args.det_l1  # type L1 already (the example spec)
    return spec, root


def _train(spec, task: str):
    from tlt.stages import train

    return lambda folder: train.run(_copy(spec), folder / "results", task=task,
                                    progress=False).model_path


def _retrain(spec, task: str, pruned: str, epochs: int):
    from tlt.stages import retrain

    return lambda folder: retrain.run(_copy(spec), folder / "results", pretrained_model=pruned,
                                      task=task, epochs=epochs, progress=False).model_path


def _prune(model: Path, out: Path, threshold: float):
    """``(pruned .tlt path, parameters before, after)``, reusing an earlier run's file."""
    from tlt.io.modelfile import read_model_metadata
    from tlt.pruning import PruneSettings
    from tlt.stages import prune

    if not out.is_file():
        prune.run(str(model), str(out), settings=PruneSettings(pruning_threshold=threshold))
    pruning = read_model_metadata(str(out))["pruning"]
    return str(out), int(pruning["params_before"]), int(pruning["params_after"])


def _task_models(work: Path, name: str, spec, task: str, retrain_epochs: int, thresholds):
    """Train (once), then prune and retrain per threshold. Returns the rows and the base model."""
    base, took = engine_bench._train_once(work, name, _train(spec, task))
    rows = []
    for threshold in thresholds:
        folder = work / name / f"pth_{threshold:g}_retrain_e{retrain_epochs}"
        folder.mkdir(parents=True, exist_ok=True)
        pruned, before, after = _prune(base, folder / "pruned.tlt", threshold)
        model, retrain_took = engine_bench._train_once(
            folder, "retrain", _retrain(spec, task, pruned, retrain_epochs))
        rows.append({"threshold": threshold, "model": model, "before": before, "after": after,
                     "retrain": retrain_took})
        logging.warning("%s: threshold %g keeps %d of %d parameters; retrained in %s", name,
                        threshold, after, before, retrain_took)
    return base, took, rows


def _candidates(base: Path, rows: list[dict], batch: int) -> dict:
    """``{name: (run(x) -> outputs list, keras model)}``: the unpruned model and every row's."""
    from tlt.io.modelfile import load_keras_model

    def entry(path):
        model, _ = load_keras_model(str(path), compile=False)
        return (lambda x: engine_bench._as_list(model.predict(x, batch_size=batch, verbose=0)),
                model)

    found = {"unpruned": entry(base)}
    for row in rows:
        found[f"pth {row['threshold']:g}"] = entry(row["model"])
    return found


# --------------------------------------------------------------------------- report


def _report(task: str, rows: list[dict], speeds: dict, quality: dict, unit: str) -> float | None:
    """Print one task's table; return the speed ratio of the target row (None: no row meets
    both the parameter and the quality target)."""
    best = {name: max(v) for (t, name), v in speeds.items() if t == task}
    median = {name: statistics.median(v) for (t, name), v in speeds.items() if t == task}
    base_q = quality["unpruned"]
    print(f"  {'model':10s} {'params kept':>22s} {'images/s best (median)':>24s} "
          f"{'speed x':>8s} {unit:>10s} {'vs unpruned':>12s}  retrain")
    print(f"  {'unpruned':10s} {rows[0]['before'] if rows else 0:>13,d} (100.0%) "
          f"{best['unpruned']:>12.1f} ({median['unpruned']:8.1f}) {1.0:8.2f} {base_q:10.2f}")
    chosen = None
    for row in rows:
        name = f"pth {row['threshold']:g}"
        kept = row["after"] / row["before"]
        ratio = best[name] / best["unpruned"]
        loss = base_q - quality[name]
        print(f"  {name:10s} {row['after']:>13,d} ({100 * kept:5.1f}%) {best[name]:>12.1f} "
              f"({median[name]:8.1f}) {ratio:8.2f} {quality[name]:10.2f} {-loss:+11.2f}  "
              f"{row['retrain']}")
        if kept <= 0.5 and loss <= 1.0 and (chosen is None or ratio > chosen[1]):
            chosen = (row["threshold"], ratio)
    if chosen is None:
        print("  target: no threshold removes >= 50 % of the parameters with <= 1 pt loss: NOT met")
        return None
    threshold, ratio = chosen
    print(f"  target: pth {threshold:g} removes >= 50 % with <= 1 pt loss and runs {ratio:.2f}x "
          f"(>= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'})")
    return ratio


def _digits_accuracy(candidates: dict, x, labels) -> dict:
    """``{name: top-1 accuracy in percent}``."""
    return {name: 100.0 * float(np.mean(np.argmax(run(x)[0], axis=1) == labels))
            for name, (run, _) in candidates.items()}


def _detection_quality(candidates: dict, spec, frames, batch: int) -> dict:
    """``{name: voc mAP in points}`` (the mean over the spec's buckets; usually one)."""
    from tlt.evaluation.detection import predict_validation_frames
    from tlt.metrics.detection import build_evaluation_settings, evaluate_detections

    settings = build_evaluation_settings(spec, mode="voc")
    scores = {}
    for name, (_, predictor) in candidates.items():
        _, truth, found = predict_validation_frames(predictor, spec, batch_size=batch, frames=frames)
        values = [v for v in evaluate_detections(truth, found, settings).mean_ap.values()
                  if v is not None]
        scores[name] = float(np.mean(values)) if values else 0.0
    return scores


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def _ratio_text(value) -> str:
    return "none" if value is None else f"{value:.2f}"


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    """Run the benchmark (see the module docstring); the last line is the speed ratio."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    tf_version = engine_bench._configure_tensorflow()
    from tlt.data.classification_input import PREPROCESSING
    from tlt.data.detection_frames_numpy import iter_validation_frames_numpy

    load_start, started = os.getloadavg(), time.monotonic()
    work = Path(args.work or tempfile.mkdtemp(prefix="tlt-bench-prune-"))
    work.mkdir(parents=True, exist_ok=True)

    cls_spec, root = _digits_spec(args)
    det_spec, _ = _detection_spec(work, args)
    # Folder names carry the budget: a rerun on the same --work reuses only identical trainings.
    cls_base, cls_took, cls_rows = _task_models(
        work, f"cls_e{args.cls_epochs}_l1_{args.cls_l1:g}", cls_spec, "classification",
        args.cls_retrain_epochs, args.thresholds)
    det_base, det_took, det_rows = _task_models(
        work, f"det_e{args.det_epochs}_l1_{args.det_l1:g}", det_spec, "detection",
        args.det_retrain_epochs, args.thresholds)
    prepared = time.monotonic()

    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    x_cls, y_cls = cls_bench._load_split(root / "val", classes)
    frames = list(iter_validation_frames_numpy(det_spec, batch_size=args.det_batch,
                                               preprocessing=PREPROCESSING))
    x_det = np.concatenate([f.images for f in frames])
    cls_cands = _candidates(cls_base, cls_rows, args.cls_batch)
    det_cands = _candidates(det_base, det_rows, args.det_batch)
    accuracy = _digits_accuracy(cls_cands, x_cls, np.argmax(y_cls, axis=1))
    maps = _detection_quality(det_cands, det_spec, frames, args.det_batch)
    load_timed = os.getloadavg()
    speeds, _ = engine_bench._timed_rounds({"cls": (x_cls, cls_cands), "det": (x_det, det_cands)},
                                           args.rounds, engine_bench._sgemm_operands(256))
    load_end = os.getloadavg()

    print(f"machine: {CORES} cores, {engine_bench._cpu_summary()}; tensorflow {tf_version} "
          f"(intra-op {CORES}, inter-op 1)")
    print(f"load average (1/5/15 min): start {_load(load_start)}, timed part start "
          f"{_load(load_timed)}, end {_load(load_end)}")
    print(f"budget: digits ResNet-18 {args.cls_epochs} epochs (L1 {args.cls_l1:g}), retrain "
          f"{args.cls_retrain_epochs}; detection ResNet-10 {args.det_frames} frames at "
          f"{args.det_width}x{args.det_height}, {args.det_epochs} epochs (L1 {args.det_l1:g}), "
          f"retrain {args.det_retrain_epochs}; {args.rounds} interleaved rounds; training "
          f"{cls_took} + {det_took}; preparation {prepared - started:.0f} s, total "
          f"{time.monotonic() - started:.0f} s")
    print(f"\nclassification: digits ResNet-18 1x32x32, {len(x_cls)} val images, batch "
          f"{args.cls_batch}; accuracy %")
    cls_ratio = _report("cls", cls_rows, speeds, accuracy, "accuracy")
    print(f"\ndetection: DetectNet_v2 ResNet-10 3x{args.det_height}x{args.det_width}, "
          f"{len(x_det)} val frames, batch {args.det_batch}; mAP voc")
    det_ratio = _report("det", det_rows, speeds, maps, "mAP")
    known = [r for r in (cls_ratio, det_ratio) if r is not None]
    lower = "none" if len(known) < 2 else f"{min(known):.2f}"
    print(f"\nratio pruned/unpruned images/s at the target threshold: {lower} (classification "
          f"{_ratio_text(cls_ratio)}, detection {_ratio_text(det_ratio)}; lower of the two)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
