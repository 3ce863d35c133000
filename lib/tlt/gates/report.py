"""Gate reports: named checks with a value, a threshold and a one-line reason.

A gate (`tlt.gates.data_gate`, `tlt.gates.quality_gate`) never raises because a check failed: it
returns a `GateReport`, which the pipeline renders (Markdown/HTML for the Kubeflow UI, JSON for
machines) and branches on. `require` turns a failed report into a `GateError` whose message is
the one line a user sees.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tlt.errors import GateError
from tlt.io.atomic import atomic_write_text

__all__ = ["GateError", "Check", "GateReport", "require", "write_gate_report", "format_value",
           "json_safe"]


def format_value(value: Any) -> str:
    """A value as people read it: numbers with 2 decimals (4 when 2 would hide a difference).

    ``0.5`` -> ``0.50``, ``0.4349`` -> ``0.4349``, ``[a, b]`` -> ``a, b``, ``[]`` -> ``none``.
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        # 0.30000000000000004 (float arithmetic) still reads 0.30
        return f"{value:.2f}" if abs(round(value, 2) - value) < 1e-9 else f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


@dataclass(frozen=True)
class Check:
    """One named check of a gate.

    Attributes:
        name: short identifier, e.g. ``malformed_label_rate``.
        value: what was measured (number, or a list of class names).
        threshold: the limit it was held to (None when the check has no number).
        passed: whether the value is within the threshold.
        reason: one line saying value, threshold and verdict.
    """

    name: str
    value: Any
    threshold: Any
    passed: bool
    reason: str


@dataclass
class GateReport:
    """The outcome of one gate.

    Attributes:
        gate: which gate (``data``, ``quality``).
        checks: every check that ran, in order.
        details: supporting numbers (counts per class, frames ...), JSON-serialisable.
    """

    gate: str
    checks: list[Check]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """The checks that did not pass."""
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line: ``data gate passed`` or ``data gate failed: <reason>; <reason>``."""
        if self.passed:
            count = len(self.checks)
            return f"{self.gate} gate passed ({count} check{'' if count == 1 else 's'})"
        return f"{self.gate} gate failed: " + "; ".join(c.reason for c in self.failed)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"gate", "passed", "summary", "checks": [...], "details"}``."""
        return {"gate": self.gate, "passed": self.passed, "summary": self.summary(),
                "checks": [asdict(c) for c in self.checks], "details": self.details}

    def to_json(self) -> str:
        """`to_dict` as indented JSON (NaN written as null, so any JSON reader accepts it)."""
        return json.dumps(json_safe(self.to_dict()), indent=2, sort_keys=True)

    def to_markdown(self) -> str:
        """A short Markdown fragment: verdict line and a table of the checks."""
        lines = [f"**{self.summary()}**", "", "| check | value | threshold | result | reason |",
                 "|---|---|---|---|---|"]
        for c in self.checks:
            lines.append(f"| {c.name} | {format_value(c.value)} | {format_value(c.threshold)} | "
                         f"{'pass' if c.passed else 'FAIL'} | {c.reason.replace('|', '/')} |")
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """A short HTML fragment (no ``<html>`` wrapper) with the verdict and the checks table."""
        esc = html.escape
        rows = "".join(
            f"<tr class=\"{'pass' if c.passed else 'fail'}\"><td>{esc(c.name)}</td>"
            f"<td>{esc(format_value(c.value))}</td><td>{esc(format_value(c.threshold))}</td>"
            f"<td>{'pass' if c.passed else 'FAIL'}</td><td>{esc(c.reason)}</td></tr>"
            for c in self.checks)
        return (f"<section class=\"gate\"><p><strong>{esc(self.summary())}</strong></p>"
                "<table><tr><th>check</th><th>value</th><th>threshold</th><th>result</th>"
                f"<th>reason</th></tr>{rows}</table></section>\n")


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, so strict JSON readers accept it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def require(report: GateReport) -> GateReport:
    """Return ``report`` when it passed; otherwise raise `GateError` listing the failed checks.

    Raises:
        GateError: ``<gate> gate failed: <reason>; <reason>`` in one line.
    """
    if not report.passed:
        raise GateError(report.summary())
    return report


def write_gate_report(report: GateReport, folder: str | Path, name: str | None = None) -> Path:
    """Write ``<name>.json``, ``<name>.md`` and ``<name>.html`` into ``folder``, each atomically.

    Args:
        report: the report.
        folder: local output folder (created if needed).
        name: base file name; default ``<gate>_gate``.

    Returns:
        The JSON file's path.
    """
    folder = Path(folder)
    base = name or f"{report.gate}_gate"
    atomic_write_text(folder / f"{base}.md", report.to_markdown())
    atomic_write_text(folder / f"{base}.html", report.to_html())
    atomic_write_text(folder / f"{base}.json", report.to_json() + "\n")
    return folder / f"{base}.json"
