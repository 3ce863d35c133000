"""Orchestration: one stage registry -> KFP components, pipelines and Argo templates.

- `registry`: every stage's name, CLI, parameters, artifacts, resources, retry policy and secrets.
- `adapters` / `entrypoints`: the single call path from a KFP component or an Argo container into
  `tlt.stages`.
- `components`, `pipelines`, `argo`, `compile`: generate ``components/``, ``pipelines/*.yaml`` and
  ``manifests/`` (``tlt-pipeline compile``).
- `local_run`: run a pipeline here through ``kfp.local`` (``tlt-pipeline run NAME --local``).
"""

__all__: list[str] = []
