"""No import circles in the evaluation path: data/detection_* and metrics/detection*.

The graph counts every ``import`` of a ``tlt`` module, including those inside functions: a
function-level import that closes a circle still couples the two modules both ways (it is how
``metrics.detection`` <-> ``detection_kitti``/``detection_voc`` and ``data.detection_frames`` <->
``data.detection_input`` hid theirs). Each module must also import with no other tlt module
loaded before it (a fresh interpreter, tlt modules unloaded between modules).
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"
PACKAGES = ("tlt.data", "tlt.metrics", "tlt.evaluation")
WATCHED = ["tlt.data.detection_frames", "tlt.data.detection_input", "tlt.data.detection_split",
           "tlt.data.detection_records", "tlt.data.detection_augment", "tlt.metrics.detection",
           "tlt.metrics.detection_types", "tlt.metrics.detection_kitti", "tlt.metrics.detection_voc",
           "tlt.evaluation.detection", "tlt.evaluation.detection_files", "tlt.evaluation.report",
           "tlt.evaluation.charts", "tlt.evaluation.detection_file", "tlt.evaluation.deployed_detection"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in (LIB / "tlt").rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The tlt modules ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from tlt.metrics import detection_kitti" names a module; "from x import f" a name
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found.update(subs or ({node.module} & known))
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, known) - {name} for name, path in modules.items()}


def _cycle_through(graph: dict[str, set[str]], start: str, scope: tuple[str, ...]) -> list[str] | None:
    """A path start -> ... -> start inside ``scope`` (depth-first), or None."""
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return path + [start]
            if nxt not in seen and nxt.startswith(scope):
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_the_graph_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from tlt.metrics import detection_kitti\n"
                     "    from tlt.data.detection_input import build_detection_input\n")
    assert _imports(probe, set(_modules())) == {"tlt.metrics.detection_kitti",
                                                "tlt.data.detection_input"}


@pytest.mark.parametrize("module", WATCHED)
def test_no_import_circle_through(module):
    graph = _graph()
    assert module in graph, f"{module} is missing"
    assert _cycle_through(graph, module, PACKAGES) is None


def test_metrics_modes_import_only_the_shared_types():
    graph = _graph()
    for mode in ("tlt.metrics.detection_kitti", "tlt.metrics.detection_voc"):
        assert {m for m in graph[mode] if m.startswith("tlt.metrics")} == {"tlt.metrics.detection_types"}
    assert "tlt.data.detection_input" not in graph["tlt.data.detection_frames"]
    assert "tlt.data.detection_frames" not in graph["tlt.data.detection_input"]


def test_each_module_imports_first_in_a_fresh_interpreter():
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    for loaded in [m for m in sys.modules if m.startswith('tlt')]:\n"
            "        del sys.modules[loaded]\n"
            "    importlib.import_module(name)\n")
    done = subprocess.run([sys.executable, "-c", code, *WATCHED], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
