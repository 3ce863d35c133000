"""Decision logic of the production pipelines: data and quality gates, promotion, prune sweeps.

Pure library modules the pipeline components call: each returns a report or decision that renders
to JSON and Markdown/HTML and never raises because a check failed (`report.require` does).

- `tlt.gates.report`: `GateReport`, `Check`, `GateError`, `require`.
- `tlt.gates.data_gate`: malformed labels, missing/new classes, class-balance shift
  (counting done by `tlt.gates.data_profile`).
- `tlt.gates.metrics`: one metric out of a dict, its JSON or a bare number.
- `tlt.gates.quality_gate`: a model's metric against a threshold.
- `tlt.gates.promotion`: champion/challenger decision.
- `tlt.gates.sweep`: smallest prune-sweep candidate within a tolerance of the best.
- `tlt.gates.run_summary`: the ExitHandler's summary.json and page.
"""

__all__: list[str] = []
