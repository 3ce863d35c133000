"""Experiment: which prune defaults suit the detection pipeline's demo (threshold, normalizer,
retrain epochs)?

Starts from a detector the demo trained (``./build.sh demo``: DEFAULT_DETECTION_SPEC of
``tlt.orchestration.pipelines``, 20 epochs on 240 synthetic frames at 240x128, seed 7) and the
convert stage's TFRecords of that run. For every ``normalizer:threshold:retrain_epochs`` asked it
prunes the detector (``tlt.stages.prune``, the guide's other defaults), retrains the pruned model
with the same spec (``tlt.stages.retrain``, exactly as the pipeline's retrain stage does: the
spec's schedule squeezed into the retrain epochs) and evaluates it on the validation fold
(``tlt.stages.evaluate``, the pipeline's evaluate). The unpruned model is evaluated the same way.

    .venv/bin/python bench/prune_defaults.py --model RUN/train/model/model.tlt \
        --dataset RUN/convert/dataset [--configs max:0.8:6,L2:0.05:6] [--grid] [--work DIR]

A retrain epoch count of 0 scores the pruned model without retraining. ``--grid`` first prints the parameters kept for a grid of thresholds of both normalizers (prune
only: cheap). Table: normalizer, threshold, retrain epochs -> parameters kept, mAP (combined
bucket, the demo report's figure), change against the unpruned model, retrain seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

GRID = {"max": (0.1, 0.3, 0.5, 0.7, 0.75, 0.8, 0.85, 0.9),
        "L2": (0.02, 0.04, 0.044, 0.045, 0.046, 0.05, 0.06)}


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the demo's trained detector (.tlt)")
    parser.add_argument("--dataset", required=True,
                        help="the demo's convert output folder (tfrecords-fold-*)")
    parser.add_argument("--configs", default="L2:0.05:6,max:0.8:6,L2:0.044:6,max:0.85:6",
                        help="comma-separated normalizer:threshold:retrain_epochs")
    parser.add_argument("--retrain-lr", type=float, default=None,
                        help="retrain max_learning_rate (default: the spec's, 5e-3; min = max/100)")
    parser.add_argument("--grid", action="store_true", help="print parameters kept per threshold")
    parser.add_argument("--work", default="/tmp/tlt-prune-defaults")
    return parser.parse_args(argv)


def _spec(dataset: str):
    """DEFAULT_DETECTION_SPEC on the convert output, as the pipeline's adapters set it."""
    from tlt import spec as spec_loader
    from tlt.orchestration.pipelines import DEFAULT_DETECTION_SPEC

    spec = spec_loader.loads(DEFAULT_DETECTION_SPEC, "detection")
    del spec.dataset_config.data_sources[:]
    spec.dataset_config.data_sources.add().tfrecords_path = f"{dataset}/tfrecords-fold-*"
    return spec


def _map(spec, model: str) -> float:
    from tlt.stages import evaluate

    return float(evaluate.run_detection(spec, model).results.mean_ap["combined"])


def _grid(model: str) -> None:
    from tlt.io.modelfile import load_keras_model
    from tlt.pruning import PruneSettings, prune_model

    keras_model, _ = load_keras_model(model, compile=False)
    for normalizer, thresholds in GRID.items():
        for threshold in thresholds:
            result = prune_model(keras_model, PruneSettings(normalizer=normalizer,
                                                            pruning_threshold=threshold))
            print(f"  grid {normalizer:3s} pth {threshold:<6g} keeps {result.params_after:>10,d} "
                  f"({100 * result.ratio:5.1f}%)", flush=True)


def _one(args, spec, normalizer: str, threshold: float, epochs: int) -> dict:
    """Prune, retrain and evaluate one setting (a rerun reuses the retrained model)."""
    from tlt.io.modelfile import read_model_metadata
    from tlt.pruning import PruneSettings
    from tlt.stages import prune, retrain

    lr = f"_lr{args.retrain_lr:g}" if args.retrain_lr else ""
    folder = Path(args.work) / f"{normalizer}_{threshold:g}_e{epochs}{lr}"
    folder.mkdir(parents=True, exist_ok=True)
    pruned = folder / "pruned.tlt"
    if not pruned.is_file():
        prune.run(args.model, str(pruned),
                  settings=PruneSettings(normalizer=normalizer, pruning_threshold=threshold))
    meta = read_model_metadata(str(pruned))["pruning"]
    started = time.monotonic()
    model = str(pruned)
    if epochs > 0:  # 0: score the pruned model as it is (what pruning alone costs)
        copy = type(spec)()
        copy.CopyFrom(spec)
        if args.retrain_lr:
            schedule = copy.training_config.learning_rate.soft_start_annealing_schedule
            schedule.max_learning_rate = args.retrain_lr
            schedule.min_learning_rate = args.retrain_lr / 100
        model = retrain.run(copy, folder / "results", pretrained_model=str(pruned),
                            task="detection", epochs=epochs, progress=False).model_path
    return {"normalizer": normalizer, "threshold": threshold, "epochs": epochs,
            "before": int(meta["params_before"]), "after": int(meta["params_after"]),
            "seconds": time.monotonic() - started, "mAP": _map(spec, model),
            "lr": args.retrain_lr or spec.training_config.learning_rate
            .soft_start_annealing_schedule.max_learning_rate}


def main(argv=None) -> int:
    """Run the experiment (see the module docstring) and print its table."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    spec = _spec(args.dataset)
    print(f"load average at start: {'/'.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    if args.grid:
        _grid(args.model)
    base = _map(spec, args.model)
    print(f"  unpruned: mAP {base:.2f}", flush=True)
    rows = []
    for config in args.configs.split(","):
        normalizer, threshold, epochs = config.split(":")
        row = _one(args, spec, normalizer, float(threshold), int(epochs))
        rows.append(row)
        print(f"  {row['normalizer']:3s} pth {row['threshold']:<6g} retrain {row['epochs']:2d} ep: "
              f"keeps {row['after']:,d} ({100 * row['after'] / row['before']:.1f}%), mAP "
              f"{row['mAP']:.2f} ({row['mAP'] - base:+.2f}), retrain {row['seconds']:.0f} s at max lr "
              f"{row['lr']:g}",
              flush=True)
    print(f"\nload average at end: {'/'.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"{'normalizer':10s} {'pth':>6s} {'retrain ep':>10s} {'params kept':>22s} "
          f"{'mAP':>7s} {'vs unpruned':>11s} {'retrain s':>9s} {'max lr':>7s}")
    print(f"{'unpruned':10s} {'':>6s} {'':>10s} {rows[0]['before'] if rows else 0:>13,d} (100.0%) "
          f"{base:7.2f}")
    for row in rows:
        print(f"{row['normalizer']:10s} {row['threshold']:>6g} {row['epochs']:>10d} "
              f"{row['after']:>13,d} ({100 * row['after'] / row['before']:5.1f}%) "
              f"{row['mAP']:7.2f} {row['mAP'] - base:+11.2f} {row['seconds']:9.0f} "
              f"{row['lr']:7g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
