"""Importing a Python file that is not on the import path (a pipeline definition, a generated
component) as a module that KFP can find again."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["import_file"]


def import_file(path: Path, prefix: str) -> ModuleType:
    """Execute ``path`` as the module ``<prefix>_<digest of its resolved path>``.

    The digest keeps two checkouts' files of the same name apart. The module is registered in
    `sys.modules` before it runs, so `inspect.getsource` (used by KFP) and pickling find it again.
    """
    module_name = f"{prefix}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
