"""Where the checkout and the project images are: the facts every generator needs.

Two images, both tagged with the package version (`tlt.__version__`), built from
``components/Dockerfile.cpu`` and ``components/Dockerfile.gpu`` by ``./build.sh images``:

- the CPU image (`DEFAULT_IMAGE`): the library, TensorFlow and ONNX Runtime; every stage runs in it
  unless it asks for a GPU;
- the GPU image (`DEFAULT_GPU_IMAGE`): the same library on CUDA, with TensorFlow's CUDA wheels and
  TensorRT's Python bindings; stages whose registry `Resources.gpus` is above 0 run in it.

`stage_image` is the one place that picks between them; ``$TLT_IMAGE`` and ``$TLT_GPU_IMAGE`` point
either at a mirror.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tlt import __version__
from tlt.errors import PipelineError

if TYPE_CHECKING:  # only for the annotation: stage_types does not import this module either way
    from tlt.orchestration.stage_types import Stage

__all__ = ["DEFAULT_IMAGE", "DEFAULT_GPU_IMAGE", "IMAGE_ENV", "GPU_IMAGE_ENV", "IMAGE_REPOSITORY",
           "IMAGES", "REPO_ROOT_ENV", "ImageFlavour", "get_flavour", "gpu_image", "project_image",
           "repo_root", "stage_image"]

#: Where the release images are pushed (one repository; the GPU image's tag ends in ``-gpu``).
IMAGE_REPOSITORY = "ghcr.io/tlt-pipelines/tlt"
#: The CPU image every component and Argo template runs in unless its stage needs a GPU.
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
#: The GPU image (CUDA, TensorRT, TensorFlow with GPU) of the stages that request GPUs.
DEFAULT_GPU_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}-gpu"
#: Environment variable that overrides `DEFAULT_IMAGE` (e.g. a private registry mirror).
IMAGE_ENV = "TLT_IMAGE"
#: Environment variable that overrides `DEFAULT_GPU_IMAGE`.
GPU_IMAGE_ENV = "TLT_GPU_IMAGE"
#: Environment variable naming the checkout root when it cannot be found from the package.
REPO_ROOT_ENV = "TLT_REPO_ROOT"

# A folder is the checkout root when it holds both of these.
_ROOT_MARKERS = ("pipelines", "components")


@dataclass(frozen=True)
class ImageFlavour:
    """One project image: how it is built and what it is called.

    Attributes:
        name: ``cpu`` or ``gpu`` (what ``./build.sh images NAME`` takes).
        dockerfile: path of its Dockerfile relative to the checkout root (the build context).
        default: the release reference, tagged with the package version.
        env: environment variable that overrides ``default``.
    """

    name: str
    dockerfile: str
    default: str
    env: str

    def ref(self, image: str | None = None) -> str:
        """``image``, else ``$<env>``, else the release reference."""
        return image or os.environ.get(self.env) or self.default


#: The project images by name, in build order.
IMAGES: dict[str, ImageFlavour] = {
    "cpu": ImageFlavour("cpu", "components/Dockerfile.cpu", DEFAULT_IMAGE, IMAGE_ENV),
    "gpu": ImageFlavour("gpu", "components/Dockerfile.gpu", DEFAULT_GPU_IMAGE, GPU_IMAGE_ENV),
}


def get_flavour(name: str) -> ImageFlavour:
    """The image called ``name`` (``cpu`` or ``gpu``).

    Raises:
        PipelineError: another name.
    """
    try:
        return IMAGES[name]
    except KeyError:
        raise PipelineError(f"unknown image {name!r}: expected one of {', '.join(IMAGES)}") from None


def project_image(image: str | None = None) -> str:
    """The CPU image to build components and templates with.

    Args:
        image: an explicit image reference; wins over everything else.

    Returns:
        ``image``, else ``$TLT_IMAGE``, else `DEFAULT_IMAGE`.
    """
    return IMAGES["cpu"].ref(image)


def gpu_image(image: str | None = None) -> str:
    """The GPU image: ``image``, else ``$TLT_GPU_IMAGE``, else `DEFAULT_GPU_IMAGE`."""
    return IMAGES["gpu"].ref(image)


def stage_image(stage: Stage, image: str | None = None, gpu: str | None = None) -> str:
    """The image ``stage`` runs in: the GPU image when its registry entry requests GPUs.

    Args:
        stage: a registry entry; its ``resources.gpus`` decides.
        image: explicit CPU image (``tlt-pipeline compile --image``); default `project_image`.
        gpu: explicit GPU image; default `gpu_image`.
    """
    if stage.resources.gpus > 0:
        return gpu_image(gpu)
    return project_image(image)


def repo_root() -> Path:
    """The checkout's root folder (the one holding ``pipelines/`` and ``components/``).

    ``$TLT_REPO_ROOT`` wins; otherwise the folders above the installed ``tlt`` package are searched,
    which finds the checkout of an editable install from any working directory.

    Raises:
        PipelineError: when ``$TLT_REPO_ROOT`` is not a checkout, or no checkout holds the package.
    """
    env = os.environ.get(REPO_ROOT_ENV)
    if env:
        root = Path(env).expanduser().resolve()
        if not _is_root(root):
            raise PipelineError(f"${REPO_ROOT_ENV}={env} is not a TLT Pipelines checkout: expected "
                                f"folders {' and '.join(_ROOT_MARKERS)} in it")
        return root
    import tlt

    start = Path(tlt.__file__).resolve().parent
    for folder in (start, *start.parents):
        if _is_root(folder):
            return folder
    raise PipelineError(f"cannot find the TLT Pipelines checkout above {start}: set ${REPO_ROOT_ENV} "
                        f"to the folder holding {' and '.join(_ROOT_MARKERS)}/")


def _is_root(folder: Path) -> bool:
    return all((folder / marker).is_dir() for marker in _ROOT_MARKERS)
