"""tlt-pipeline: list, compile and run the TLT pipelines; run one stage in an Argo container.

    tlt-pipeline list
    tlt-pipeline compile [--check] [--image IMAGE]
    tlt-pipeline run detection --local [--param k=v ...] [--pipeline-root DIR] [--resume RUN_DIR] [-v]
    tlt-pipeline schedule retraining --cron "0 3 * * *" --host URL [--experiment E] [--param k=v ...]
    tlt-pipeline demo-retraining [--work DIR]
    tlt-pipeline stage convert --spec=... --output-dataset=DIR     (what Argo templates run)

A local run keeps the terminal quiet: one line per step, then a summary (steps, metrics, where the
model, the report and the full log are); ``-v`` also shows everything the tasks print.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from tlt.cli._common import HelpFormatter, run_main, setup_logging
from tlt.errors import PipelineError

__all__ = ["main"]

PROG = "tlt-pipeline"
# The local runner's default, repeated so `-h` shows it without importing kfp.
DEFAULT_PIPELINE_ROOT = ".tlt-local-runs"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Compile and run the TLT Kubeflow/Argo pipelines.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show DEBUG log lines; with run, also everything the tasks print")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="show the pipelines and stages", formatter_class=HelpFormatter)
    comp = sub.add_parser("compile", help="regenerate components/, pipelines/*.yaml and manifests/",
                          formatter_class=HelpFormatter)
    comp.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 listing generated files that are stale")
    comp.add_argument("--image", help="project image (default $TLT_IMAGE or the release image)")
    run = sub.add_parser("run", help="run a pipeline", formatter_class=HelpFormatter)
    run.add_argument("pipeline", help="pipeline name (see `tlt-pipeline list`)")
    run.add_argument("--local", action="store_true", help="run here through kfp.local (the only mode so far)")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="pipeline parameter; repeatable")
    run.add_argument("--compiled", action="store_true",
                     help="run the compiled pipelines/<name>.yaml (what Kubeflow runs) instead of the DSL")
    run.add_argument("--pipeline-root", default=DEFAULT_PIPELINE_ROOT, help="folder for the run's artifacts")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="go on with a killed or failed local run in its folder (pass the same --param "
                          "values): finished steps are reused, train and retrain resume from their "
                          "checkpoints")
    run.add_argument("--retries", action="store_true",
                     help="retry failed tasks as on a cluster (waits out the backoff)")
    # SUPPRESS: without -v here, the top-level -v (tlt-pipeline -v run ...) keeps its value.
    run.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                     help="also show everything the tasks print (it is always in the run's log)")
    sched = sub.add_parser("schedule", help="create a Kubeflow recurring run of a pipeline",
                           formatter_class=HelpFormatter)
    sched.add_argument("pipeline", help="pipeline name (see `tlt-pipeline list`)")
    sched.add_argument("--cron", required=True,
                       help="five fields (minute hour day month weekday), six with seconds first, "
                            "or a macro such as @daily")
    sched.add_argument("--host", required=True, help="Kubeflow Pipelines API, e.g. http://localhost:8080")
    sched.add_argument("--experiment", default="tlt-scheduled", help="experiment of the runs")
    sched.add_argument("--name", help="name of the recurring run (default: pipeline and cron)")
    sched.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="pipeline parameter; repeatable")
    demo = sub.add_parser("demo-retraining", formatter_class=HelpFormatter,
                          help="run the retraining pipeline twice on sample data against a local registry")
    demo.add_argument("--work", default=".tlt-demo-retraining",
                      help="folder for the sample data, the registry and the runs (the demo's own "
                           "sub-folders in it are replaced)")
    stage = sub.add_parser("stage", add_help=False, help="run one stage as an Argo container does")
    stage.add_argument("stage", help="stage name")
    stage.add_argument("stage_args", nargs=argparse.REMAINDER, help="the stage's flags")
    return parser


def _list() -> None:
    from tlt.orchestration.pipelines import PIPELINES
    from tlt.orchestration.registry import STAGES

    print("pipelines:")
    for info in PIPELINES.values():
        print(f"  {info.name:<14} {info.description}")
    print("stages:")
    for stage in STAGES.values():
        print(f"  {stage.name:<14} {stage.cli:<22} {stage.description}")


def _compile(check: bool, image: str | None) -> int:
    from tlt.orchestration.compile import compile_tree, stale_files, write_tree
    from tlt.orchestration.paths import repo_root

    root = repo_root()
    files = compile_tree(root, image)
    if check:
        stale = stale_files(files, root)
        for rel in stale:
            print(f"stale: {rel}")
        if stale:
            print(f"{PROG}: {len(stale)} generated file(s) are stale: run `{PROG} compile`", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files are up to date")
        return 0
    changed = write_tree(files, root)
    for rel in changed:
        print(f"wrote {rel}")
    print(f"{len(files)} generated files, {len(changed)} changed")
    return 0


def _run(args: argparse.Namespace) -> None:
    from tlt.orchestration.local_run import run_local
    from tlt.orchestration.pipelines import get_pipeline
    from tlt.orchestration.summary import render_summary

    info = get_pipeline(args.pipeline)
    if not args.local:
        raise PipelineError(f"only local runs are built in: add --local, or submit pipelines/{info.name}.yaml "
                            f"to Kubeflow or manifests/workflows/{info.name}.yaml with `argo submit`")
    # Quiet by default: a line per step on stderr; executor dumps, TensorFlow noise and tracebacks
    # stay in the run's log unless -v asks for them.
    result = run_local(info.name, args.param, pipeline_root=args.pipeline_root,
                       echo=sys.stdout if args.verbose else None,
                       progress=None if args.verbose else sys.stderr,
                       retries=args.retries, compiled=args.compiled, resume=args.resume)
    print(render_summary(result))


def _schedule(args: argparse.Namespace) -> None:
    from tlt.orchestration.schedule import schedule_pipeline

    made = schedule_pipeline(args.pipeline, args.cron, args.host, experiment=args.experiment,
                             params=args.param, job_name=args.name)
    print(f"cron: {made.schedule.note}")
    print(f"recurring run {made.recurring_run_id or '(no id returned)'} '{made.job_name}' of "
          f"{made.pipeline} in experiment {made.experiment}: cron {made.schedule.kfp_cron!r}, "
          f"at most 1 run at a time, no catch-up")


def _demo_retraining(args: argparse.Namespace) -> None:
    from tlt.orchestration.retraining_demo import run_demo

    for line in run_demo(args.work, progress=sys.stderr):
        print(line)


def _main(argv: Sequence[str] | None) -> int:
    args = _build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "list":
        _list()
    elif args.command == "compile":
        return _compile(args.check, args.image)
    elif args.command == "run":
        _run(args)
    elif args.command == "schedule":
        _schedule(args)
    elif args.command == "demo-retraining":
        _demo_retraining(args)
    elif args.command == "stage":
        from tlt.orchestration.entrypoints import run_stage_argv

        meta = run_stage_argv(args.stage, args.stage_args, prog=f"{PROG} stage {args.stage}")
        print(json.dumps(meta, sort_keys=True, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``tlt-pipeline``; returns the exit code."""
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
