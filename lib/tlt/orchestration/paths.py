"""Where the checkout and the project image are: the two facts every generator needs."""

from __future__ import annotations

import os
from pathlib import Path

from tlt import __version__
from tlt.errors import PipelineError

__all__ = ["DEFAULT_IMAGE", "IMAGE_ENV", "REPO_ROOT_ENV", "project_image", "repo_root"]

#: The container image every component and Argo template runs in (the checked-in files use it).
DEFAULT_IMAGE = f"ghcr.io/tlt-pipelines/tlt:{__version__}"
#: Environment variable that overrides `DEFAULT_IMAGE` (e.g. a private registry mirror).
IMAGE_ENV = "TLT_IMAGE"
#: Environment variable naming the checkout root when it cannot be found from the package.
REPO_ROOT_ENV = "TLT_REPO_ROOT"

# A folder is the checkout root when it holds both of these.
_ROOT_MARKERS = ("pipelines", "components")


def project_image(image: str | None = None) -> str:
    """The image to build components and templates with.

    Args:
        image: an explicit image reference; wins over everything else.

    Returns:
        ``image``, else ``$TLT_IMAGE``, else `DEFAULT_IMAGE`.
    """
    return image or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


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
