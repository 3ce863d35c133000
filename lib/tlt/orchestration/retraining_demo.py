"""The scheduled-retraining demo: two batches of new data, two local runs, two decisions.

``tlt-pipeline demo-retraining`` (``./build.sh demo retraining``) writes two small synthetic KITTI
data sets (`tlt.data.synthetic`, different seeds: the same classes, other frames), then runs the
retraining pipeline locally twice against one registry folder: the first run finds no champion,
trains one from the spec and promotes it; the second fine-tunes that champion on the second batch,
scores both on the same held-out fold and promotes or keeps, saying why. The spec is the
detection pipeline's, cut to a few epochs on small frames so both runs take a few minutes on two
CPU cores (128x64 frames, small enough for a detector to learn the synthetic cars and
pedestrians in 16 epochs).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

from tlt.errors import PipelineError

__all__ = ["DEMO_FRAMES", "DemoRun", "demo_spec", "run_demo"]

#: Frames per batch of new data, their size, and the training budget of each run: at 128x64 a
#: first training of 16 epochs of batch 4 reaches about 40 mAP on the held-out fold (20 epochs:
#: 40.7, measured here in 274 s on two loaded cores); fine-tuning takes 6 more.
DEMO_FRAMES = 96
_WIDTH, _HEIGHT = 128, 64
_BATCH = 4
_FIRST_EPOCHS = 16
_FINETUNE_EPOCHS = 6
_SEEDS = (11, 12)
_MODEL = "detectnet-demo"
# Sub-folders the demo owns under its work folder (removed before it starts, nothing else is).
_OWNED = ("new-data-1", "new-data-2", "registry", "runs")


@dataclass(frozen=True)
class DemoRun:
    """One run of the demo: which batch it trained on and what it decided."""

    batch: str
    run_dir: Path
    summary: str
    promoted: bool
    report: Path | None


def demo_spec(epochs: int = _FIRST_EPOCHS, width: int = _WIDTH, height: int = _HEIGHT,
              batch_size: int = _BATCH) -> str:
    """The detection pipeline's default spec at ``width`` x ``height``, trained for ``epochs``
    (validated once, at the end) with batches of ``batch_size``.

    Raises:
        PipelineError: the default spec no longer has the lines this edits (a loud failure
            instead of a silently longer demo).
    """
    from tlt.orchestration.pipelines import DEFAULT_DETECTION_SPEC

    text = DEFAULT_DETECTION_SPEC
    for old, new in (("num_epochs: 20", f"num_epochs: {epochs}"),
                     ("validation_period_during_training: 20",
                      f"validation_period_during_training: {epochs}"),
                     ("first_validation_epoch: 20", f"first_validation_epoch: {epochs}"),
                     ("checkpoint_interval: 5", "checkpoint_interval: 1"),
                     ("output_image_width: 240", f"output_image_width: {width}"),
                     ("output_image_height: 128", f"output_image_height: {height}"),
                     ("batch_size_per_gpu: 8", f"batch_size_per_gpu: {batch_size}")):
        if text.count(old) != 1:
            raise PipelineError(f"retraining demo: the default detection spec has {old!r} "
                                f"{text.count(old)} times, expected once")
        text = text.replace(old, new)
    return text


def _prepare(work: Path) -> tuple[Path, Path, Path]:
    from tlt.data.synthetic import make_detection_dataset

    work.mkdir(parents=True, exist_ok=True)
    for name in _OWNED:
        shutil.rmtree(work / name, ignore_errors=True)
    batches = []
    for i, seed in enumerate(_SEEDS, start=1):
        root = work / f"new-data-{i}"
        make_detection_dataset(root, num_frames=DEMO_FRAMES, width=_WIDTH, height=_HEIGHT,
                               seed=seed)
        batches.append(root)
    return batches[0], batches[1], work / "registry"


def _decision(result, batch: Path, registry: Path) -> DemoRun:
    """What the run decided, as the registry records it: its version's decision and the alias."""
    from tlt.io.registry import Registry
    from tlt.io.registry_aliases import current

    reg = Registry(registry)
    version = reg.get_version(_MODEL, reg.latest_version(_MODEL))
    decision = version.metadata.get("decision") or {}
    production = current(reg, _MODEL)
    promoted = production is not None and production.to_version == version.version
    if promoted:
        summary = f"version {version.version} promoted to production: {decision.get('reason')}"
    else:
        summary = (f"version {version.version} published, production stays version "
                   f"{production.to_version if production else 'unset'}: {decision.get('reason')}")
    page = None
    for found in sorted(result.run_dir.glob("promote*/report")):  # the branch that ran has one
        page = result.run_dir / "promotion.html"  # KFP's file has no extension a browser needs
        shutil.copyfile(found, page)
    return DemoRun(batch.name, result.run_dir, summary, promoted, page)


def run_demo(work: str | Path, *, progress: TextIO | None = None) -> Iterator[str]:
    """Make both batches, run the pipeline twice, and yield the lines the demo prints.

    Args:
        work: folder for the data, the registry and the runs (its demo sub-folders are replaced).
        progress: a stream receiving one line per pipeline step.

    Yields:
        Lines: what each run decided, then the registry's versions and production alias.

    Raises:
        PipelineError: a run failed (its one-line error and log).
    """
    from tlt.io.registry import Registry
    from tlt.io.registry_aliases import current, history
    from tlt.orchestration.local_results import format_seconds
    from tlt.orchestration.local_run import run_local
    from tlt.orchestration.pipelines import finetune_spec

    work = Path(work).resolve()
    first, second, registry = _prepare(work)
    runs = []
    for batch in (first, second):
        if progress is not None:
            progress.write(f"retraining run {len(runs) + 1} on {batch} ...\n")
        params = {"new_data_uri": str(batch), "registry_uri": str(registry), "model_name": _MODEL,
                  "train_spec": demo_spec(), "finetune_spec": finetune_spec(demo_spec()),
                  "finetune_epochs": _FINETUNE_EPOCHS}
        result = run_local("retraining", params, pipeline_root=work / "runs", progress=progress)
        runs.append(_decision(result, batch, registry))
        yield (f"run {len(runs)} ({batch.name}, {format_seconds(result.seconds)}): "
               f"{'PROMOTED' if runs[-1].promoted else 'KEPT champion'}: {runs[-1].summary}")
        if runs[-1].report is not None:
            yield f"  report: {runs[-1].report}"
    reg = Registry(registry)
    versions = ", ".join(v.version for v in reg.list_versions(_MODEL))
    yield (f"registry {registry}: {_MODEL} versions {versions}; production = version "
           f"{current(reg, _MODEL).to_version}; {len(history(reg, _MODEL))} promotion(s) in "
           f"its history")
