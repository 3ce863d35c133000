"""``tlt-pipeline compile``: regenerate every generated orchestration file, deterministically.

Generated from the registry and the pipeline files of a checkout:

- ``components/<stage>/component.py``, ``component.yaml`` (KFP IR) and ``README.md``
- ``pipelines/<name>.yaml`` (KFP IR of ``pipelines/<name>.py``)
- ``manifests/``: the kustomize base and overlays, the WorkflowTemplate of each stage, the Workflow
  of each pipeline, the retraining CronWorkflow and the secret templates
  (`tlt.orchestration.kustomize`)

Keys are sorted, order is stable and nothing records a time, so compiling twice gives the same bytes
and `stale_files` can compare a fresh compile with the checked-in copies.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tlt.errors import PipelineError
from tlt.io.atomic import atomic_write_text
from tlt.orchestration import argo, argo_workflow, kustomize
from tlt.orchestration.components import GENERATED_MARK, load_component, render_component_source, render_readme
from tlt.orchestration.paths import project_image, repo_root
from tlt.orchestration.pipelines import PIPELINES, load_pipeline
from tlt.orchestration.registry import STAGES

__all__ = ["compile_tree", "write_tree", "stale_files", "dump_yaml"]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (specs) as literal blocks so the manifests stay readable."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data and all(line == line.rstrip() for line in data.split("\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(*docs: Any) -> str:
    """YAML text of ``docs`` (several become a multi-document stream) under a generated-file header."""
    body = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=100)
                        for d in docs)
    return f"# {GENERATED_MARK}\n{body}"


def _compile_kfp(func: Any, work: Path, name: str, source: str) -> str:
    from kfp import compiler

    out = work / f"{name}.yaml"
    compiler.Compiler().compile(func, str(out))
    mark = GENERATED_MARK.replace("tlt.orchestration.registry", source)
    return f"# {mark}\n" + _repair_header(out.read_text(encoding="utf-8"))


_TOP_KEY = re.compile(r"^[A-Za-z]\w*:")


def _repair_header(text: str) -> str:
    """Comment out header lines that KFP leaves uncommented.

    KFP 2.17 writes a ``# Inputs:`` header listing parameter defaults; a multi-line default (our
    prototxt specs) spills its later lines out of the comment and the file is no longer YAML. The
    body is the first top-level key from which the rest parses as the pipeline IR.
    """
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not _TOP_KEY.match(line):
            continue
        try:
            first = next(yaml.safe_load_all("\n".join(lines[i:])))
        except yaml.YAMLError:
            continue
        if isinstance(first, dict) and "pipelineInfo" in first:
            header = [ln if ln.startswith("#") else f"#{ln}" for ln in lines[:i]]
            return "\n".join(header + lines[i:])
    raise PipelineError("KFP wrote a pipeline file without a pipelineInfo document")


def compile_tree(root: str | Path | None = None, image: str | None = None) -> dict[str, str]:
    """Every generated file of a checkout, as relative path -> text (nothing is written).

    Args:
        root: the checkout whose ``pipelines/*.py`` are compiled; default `repo_root`.
        image: the project image; default `tlt.orchestration.paths.project_image`.

    Raises:
        PipelineError: a pipeline or component that KFP cannot compile.
    """
    root = Path(root if root is not None else repo_root())
    image = project_image(image)
    files: dict[str, str] = {}
    templates: dict[str, Any] = {}
    workflows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tlt-compile-") as tmp:
        work = Path(tmp)
        for stage in STAGES.values():
            folder = f"components/{stage.name}"
            source = render_component_source(stage, image)
            files[f"{folder}/component.py"] = source
            files[f"{folder}/README.md"] = render_readme(stage, image)
            (work / folder).mkdir(parents=True)
            (work / folder / "component.py").write_text(source, encoding="utf-8")
            try:
                comp = load_component(stage.name, root=work)
                files[f"{folder}/component.yaml"] = _compile_kfp(comp, work, f"component-{stage.name}",
                                                                    f"{folder}/component.py")
            except Exception as err:  # KFP raises plain exceptions; name the stage for the user
                raise PipelineError(f"cannot compile component {stage.name}: {err}") from err
            templates[stage.name] = argo.build_workflow_template(stage, image, gpu=False)
        for info in PIPELINES.values():
            try:
                func = load_pipeline(info.name, root=root, components_root=work)
                text = _compile_kfp(func, work, f"pipeline-{info.name}", f"pipelines/{info.name}.py")
            except PipelineError:
                raise
            except Exception as err:
                raise PipelineError(f"cannot compile pipeline {info.name} "
                                    f"({root / 'pipelines' / (info.name + '.py')}): {err}") from err
            files[f"pipelines/{info.name}.yaml"] = text
            ir = next(yaml.safe_load_all(text))
            workflows[info.name] = argo_workflow.build_workflow(info.name, ir)
    for rel, content in kustomize.build_manifest_tree(STAGES, templates, workflows).items():
        files[f"manifests/{rel}"] = _render(content)
    return dict(sorted(files.items()))


def _render(content: Any) -> str:
    """A manifests file's text: verbatim text (env templates), else YAML under the generated header."""
    if isinstance(content, str):
        return f"# {GENERATED_MARK}\n{content}"
    return dump_yaml(*content) if isinstance(content, list) else dump_yaml(content)


def write_tree(files: dict[str, str], root: str | Path) -> list[str]:
    """Write ``files`` under ``root`` atomically; return the paths whose content changed."""
    changed = []
    for rel, text in files.items():
        path = Path(root) / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        atomic_write_text(path, text)
        changed.append(rel)
    return changed


def stale_files(files: dict[str, str], root: str | Path) -> list[str]:
    """Relative paths under ``root`` that are missing or differ from ``files``."""
    stale = []
    for rel, text in files.items():
        path = Path(root) / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(rel)
    return stale
