"""tlt-pipeline: list, compile and run the TLT pipelines; run one stage in an Argo container.

    tlt-pipeline list
    tlt-pipeline compile [--check] [--image IMAGE]
    tlt-pipeline run detection --local [--param k=v ...] [--pipeline-root DIR]
    tlt-pipeline stage convert --spec=... --output-dataset=DIR     (what Argo templates run)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from tlt.cli._common import run_main, setup_logging
from tlt.errors import PipelineError

__all__ = ["main"]

PROG = "tlt-pipeline"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Compile and run the TLT Kubeflow/Argo pipelines.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show DEBUG log lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="show the pipelines and stages")
    comp = sub.add_parser("compile", help="regenerate components/, pipelines/*.yaml and manifests/")
    comp.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 listing generated files that are stale")
    comp.add_argument("--image", help="project image (default $TLT_IMAGE or the release image)")
    run = sub.add_parser("run", help="run a pipeline")
    run.add_argument("pipeline", help="pipeline name (see `tlt-pipeline list`)")
    run.add_argument("--local", action="store_true", help="run here through kfp.local (the only mode so far)")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="pipeline parameter; repeatable")
    run.add_argument("--compiled", action="store_true",
                     help="run the compiled pipelines/<name>.yaml (what Kubeflow runs) instead of the DSL")
    run.add_argument("--pipeline-root", help="folder for the run's artifacts (default ./.tlt-local-runs)")
    run.add_argument("--retries", action="store_true",
                     help="retry failed tasks as on a cluster (waits out the backoff)")
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
    from tlt.orchestration.local_run import DEFAULT_PIPELINE_ROOT, run_local
    from tlt.orchestration.pipelines import get_pipeline

    info = get_pipeline(args.pipeline)
    if not args.local:
        raise PipelineError(f"only local runs are built in: add --local, or submit pipelines/{info.name}.yaml "
                            f"to Kubeflow or manifests/workflows/{info.name}.yaml with `argo submit`")
    result = run_local(info.name, args.param, pipeline_root=args.pipeline_root or DEFAULT_PIPELINE_ROOT,
                       echo=sys.stdout, retries=args.retries, compiled=args.compiled)
    print(f"pipeline {result.pipeline} finished")
    print(f"  run folder: {result.run_dir}")
    print(f"  log:        {result.log_file}")
    for art in result.outputs.values():
        print(f"  output {art.name} ({art.kind}): {art.path}")
        print("    metadata: " + json.dumps(art.metadata, sort_keys=True, indent=2).replace("\n", "\n    "))


def _main(argv: Sequence[str] | None) -> int:
    args = _build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "list":
        _list()
    elif args.command == "compile":
        return _compile(args.check, args.image)
    elif args.command == "run":
        _run(args)
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
