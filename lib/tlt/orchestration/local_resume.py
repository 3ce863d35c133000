"""Resuming a local pipeline run that died (``tlt-pipeline run NAME --local --resume RUN_DIR``).

kfp.local names each run's folder ``<pipeline>-<timestamp>`` (``<root>/<run>/<task>/<output>``),
so a plain rerun writes every task into a new folder: nothing it did before is found. Resuming
runs the pipeline again *in the dead run's folder*, with kfp.local's task cache on:

- steps that finished (convert, evaluate ...) are cache hits: kfp.local (2.17) keys its cache on
  the component, image, command, arguments and environment, stores it in
  ``<root>/.kfp_cache`` (`CACHE_DIR`) after each successful task, and treats an entry whose local
  artifact folder has gone as a miss;
- the step that was cut (train, retrain) runs again on its own output folder, which it resumes from
  its last checkpoint (``tlt.training``: "resuming from ... (epoch N of M)");
- steps that never ran, run.

`run_folder` makes kfp.local reuse a folder name; `check_resume_dir` says in one line why a folder
cannot be resumed. The local runner turns caching on (``kfp.local.init(enable_caching=True)``) and
uses both.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator

from tlt.errors import PipelineError

__all__ = ["CACHE_DIR", "CACHE_HIT", "check_resume_dir", "run_folder"]

#: kfp.local's cache folder under the pipeline root (its default for ``enable_caching=True``).
CACHE_DIR = ".kfp_cache"
#: kfp.local's log line for a step served from its cache (``Task convert cache hit (key=...)``).
CACHE_HIT = re.compile(r"Task (\S+) cache hit \(key=")

# kfp.local's run folder name: the compiled pipeline's name, then a microsecond timestamp.
_RUN_NAME = re.compile(r"^(?P<pipeline>.+)-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{6}$")


def check_resume_dir(run_dir: str | Path, pipeline_name: str) -> Path:
    """The folder of an earlier local run of ``pipeline_name``, checked before anything runs.

    Args:
        run_dir: what the user gave (``--resume``): a folder under a pipeline root.
        pipeline_name: the compiled pipeline's name (``pipeline_spec.pipeline_info.name``, e.g.
            ``tlt-detection``), which starts kfp.local's folder names.

    Returns:
        The folder, resolved; its parent is the pipeline root to run with.

    Raises:
        PipelineError: no such folder, or not a run folder of this pipeline.
    """
    path = Path(run_dir).expanduser().resolve()
    if not path.is_dir():
        raise PipelineError(f"--resume {run_dir}: no such run folder (a folder under the pipeline root "
                            f"named {pipeline_name}-<timestamp>)")
    match = _RUN_NAME.match(path.name)
    if match is None or match.group("pipeline") != pipeline_name:
        raise PipelineError(f"--resume {run_dir}: not a run folder of pipeline {pipeline_name} (expected "
                            f"a name like {pipeline_name}-2026-01-31-12-00-00-000000)")
    return path


@contextlib.contextmanager
def run_folder(name: str) -> Iterator[None]:
    """Within the block, kfp.local runs pipelines in folder ``<pipeline root>/<name>``.

    kfp.local (2.17) takes a run's folder name from
    ``kfp.local.executor_input_utils.get_local_pipeline_resource_name`` once per pipeline run; it
    is replaced for the block and restored after it.

    Raises:
        PipelineError: the installed kfp has no such function (a version this was not made for).
    """
    from kfp.local import executor_input_utils

    original = getattr(executor_input_utils, "get_local_pipeline_resource_name", None)
    if original is None:
        raise PipelineError("this kfp version cannot resume a local run (kfp.local has no "
                            "get_local_pipeline_resource_name); use kfp 2.17 as requirements.txt pins")
    executor_input_utils.get_local_pipeline_resource_name = lambda pipeline_name: name
    try:
        yield
    finally:
        executor_input_utils.get_local_pipeline_resource_name = original
