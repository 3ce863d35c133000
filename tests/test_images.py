"""The project images: what the Dockerfiles install, what the build context keeps out, which image
each stage runs in, and that the generated component sources import only what the images have."""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tlt import __version__
from tlt.errors import PipelineError
from tlt.orchestration.paths import (
    DEFAULT_GPU_IMAGE, DEFAULT_IMAGE, IMAGES, get_flavour, gpu_image, project_image, stage_image,
)
from tlt.orchestration.registry import STAGES
from tlt.orchestration.stage_types import Resources


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    result = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), " ".join(rest.split())))
    return result


def _pin(repo_root: Path, package: str) -> str:
    for line in (repo_root / "requirements.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{package} is not pinned in requirements.txt")


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_dockerfile_installs_the_pinned_requirements_then_the_package(repo_root, flavour):
    steps = _instructions(repo_root / IMAGES[flavour].dockerfile)
    copies = [args for word, args in steps if word == "COPY"]
    runs = [args for word, args in steps if word == "RUN"]
    assert copies[0] == "requirements.txt ./"
    [requirements] = [i for i, r in enumerate(runs) if "-r requirements.txt" in r]
    [package] = [i for i, r in enumerate(runs) if "pip install --no-deps -e ." in r]
    assert requirements < package  # pinned dependencies first, the package without re-resolving
    for folder in ("lib", "components", "pipelines", "examples"):
        assert f"{folder} ./{folder}" in copies
    assert "pyproject.toml README.md ./" in copies
    assert ("ENV", "TLT_REPO_ROOT=/opt/tlt") in steps
    assert steps[-1] == ("ENTRYPOINT", "[]")  # KFP and Argo set the command


def test_cpu_image_is_python_311(repo_root):
    [base] = [args for word, args in _instructions(repo_root / "components/Dockerfile.cpu") if word == "FROM"]
    assert base.startswith("python:3.11-")


def test_gpu_image_adds_cuda_tensorflow_and_tensorrt_10(repo_root):
    steps = _instructions(repo_root / "components/Dockerfile.gpu")
    assert [args for word, args in steps if word == "FROM"] == ["${CUDA_BASE}"]
    [default] = [args.split("=", 1)[1] for word, args in steps if word == "ARG" and args.startswith("CUDA_BASE=")]
    assert default.startswith("nvcr.io/nvidia/cuda:12.")  # TensorFlow's and-cuda wheels are CUDA 12
    assert default.endswith("-base-ubuntu22.04")  # the libraries come as wheels: the base flavour is enough
    [install] = [args for word, args in steps if word == "RUN" and "-r requirements.txt" in args]
    # The same TensorFlow as the CPU image, with its CUDA wheels: the pins must not drift apart.
    assert f'"tensorflow[and-cuda]=={_pin(repo_root, "tensorflow")}"' in install
    # TensorRT 11 removed the INT8 calibrators and builder flags tlt.engines.tensorrt_engine uses.
    assert re.search(r'"tensorrt-cu12==10\.[\d.]+"', install), install
    assert "python3.11 -m venv" in " ".join(args for _, args in steps)
    assert ("ENV", 'VIRTUAL_ENV=/opt/venv') in steps
    assert any(word == "ENV" and args.startswith('PATH="/opt/venv/bin:') for word, args in steps)


def test_dockerignore_keeps_local_state_out_and_every_copied_path_in(repo_root):
    patterns = [line.strip() for line in (repo_root / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for local in (".git", ".venv", "demo-output", ".tlt-local-runs", ".tlt-cache"):
        assert local in patterns
    for flavour in IMAGES.values():
        for word, args in _instructions(repo_root / flavour.dockerfile):
            if word != "COPY":
                continue
            for source in args.split()[:-1]:
                assert (repo_root / source).exists(), source
                assert not any(fnmatch.fnmatch(source, p) for p in patterns), f"{source} is ignored"


def test_image_references_come_from_the_package_version(monkeypatch):
    monkeypatch.delenv("TLT_IMAGE", raising=False)
    monkeypatch.delenv("TLT_GPU_IMAGE", raising=False)
    assert DEFAULT_IMAGE == f"ghcr.io/tlt-pipelines/tlt:{__version__}"
    assert DEFAULT_GPU_IMAGE == f"ghcr.io/tlt-pipelines/tlt:{__version__}-gpu"
    assert (project_image(), gpu_image()) == (DEFAULT_IMAGE, DEFAULT_GPU_IMAGE)
    monkeypatch.setenv("TLT_GPU_IMAGE", "mirror.local/tlt:9-gpu")
    assert (project_image(), gpu_image()) == (DEFAULT_IMAGE, "mirror.local/tlt:9-gpu")
    assert gpu_image("x/y:z") == "x/y:z"
    with pytest.raises(PipelineError, match=r"^unknown image 'tpu': expected one of cpu, gpu$"):
        get_flavour("tpu")


def test_stage_image_follows_the_registry_gpu_request(monkeypatch):
    monkeypatch.delenv("TLT_IMAGE", raising=False)
    monkeypatch.delenv("TLT_GPU_IMAGE", raising=False)
    for stage in STAGES.values():
        expected = DEFAULT_GPU_IMAGE if stage.resources.gpus > 0 else DEFAULT_IMAGE
        assert stage_image(stage) == expected, stage.name
    train = STAGES["train"]
    on_gpu = replace(train, resources=Resources(gpus=1))
    on_cpu = replace(train, resources=Resources(gpus=0))
    assert stage_image(on_gpu) == DEFAULT_GPU_IMAGE
    assert stage_image(on_cpu) == DEFAULT_IMAGE
    assert stage_image(on_gpu, image="mine:cpu", gpu="mine:gpu") == "mine:gpu"
    assert stage_image(on_cpu, image="mine:cpu", gpu="mine:gpu") == "mine:cpu"


_STDLIB = frozenset(sys.stdlib_module_names)


def _root(module: str) -> str:
    return module.split(".")[0]


def _imports(nodes) -> list[str]:
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


# Every generated component source in the checkout (test_pipeline_compile checks they are current).
_COMPONENTS = sorted(p.parent.name for p in (Path(__file__).resolve().parents[1] / "components").glob("*/component.py"))


@pytest.mark.parametrize("stage", _COMPONENTS)
def test_component_source_imports_only_what_the_image_has(repo_root, stage):
    """KFP executes the component module in the image: its top level may import kfp (the executor's
    own package) and the standard library only, the body tlt (installed in both images) and the
    standard library; TensorFlow, TensorRT and the rest load inside the stage, where a missing one is
    a one-line error."""
    source = repo_root / "components" / stage / "component.py"
    tree = ast.parse(source.read_text(), filename=str(source))
    top = _imports(tree.body)
    assert "kfp" in top and all(_root(name) in {"kfp", *_STDLIB} for name in top), top
    [func] = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    inner = _imports(ast.walk(func))
    assert "tlt.orchestration.entrypoints" in inner, inner
    assert all(_root(name) in {"tlt", *_STDLIB} for name in inner), inner
    # Nothing else hides at module level (a try/except import, a conditional import).
    assert {type(n).__name__ for n in tree.body} <= {"Expr", "Import", "ImportFrom", "Assign", "FunctionDef"}


@pytest.mark.parametrize("stage", _COMPONENTS)
def test_generated_files_name_the_image_their_stage_runs_in(repo_root, stage, monkeypatch):
    """Every image reference comes from `stage_image` (the registry decides, in one place): the KFP
    component of a stage that requests GPUs runs in the GPU image, the others in the CPU image; the
    Argo templates of the kustomize base all run in the CPU image (the base is for clusters without
    GPUs) and the ``gpu`` component switches exactly the GPU stages to the GPU image."""
    import yaml

    monkeypatch.delenv("TLT_IMAGE", raising=False)
    monkeypatch.delenv("TLT_GPU_IMAGE", raising=False)
    expected = stage_image(STAGES[stage])
    hint = ("regenerate with `tlt-pipeline compile` after components.py takes its image from "
            "tlt.orchestration.paths.stage_image (notes/pending.md)")
    source = (repo_root / "components" / stage / "component.py").read_text()
    assert f'base_image="{expected}"' in source, f"components/{stage}/component.py: {hint}"
    template = yaml.safe_load((repo_root / "manifests" / "templates" / f"{stage}.yaml").read_text())
    assert {t["container"]["image"] for t in template["spec"]["templates"]} == {DEFAULT_IMAGE}
    gpu = yaml.safe_load((repo_root / "manifests" / "components" / "gpu" / "kustomization.yaml").read_text())
    images = [op["value"] for patch in gpu["patches"] if patch["target"]["name"] == f"tlt-{stage}"
              for op in yaml.safe_load(patch["patch"]) if op["path"].endswith("/container/image")]
    assert images == ([DEFAULT_GPU_IMAGE] if expected == DEFAULT_GPU_IMAGE else [])
