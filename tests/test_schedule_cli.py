"""``tlt-pipeline schedule``: the recurring run's exact arguments (fake client), bad cron, no host."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from det_fixtures import run_main
from tlt.cli.pipeline import main
from tlt.errors import PipelineError, SpecError
from tlt.orchestration import schedule


class FakeClient:
    """Records what schedule_pipeline asks of kfp.Client (and keeps the compiled package)."""

    def __init__(self, host: str):
        self.host = host
        self.calls: list[tuple[str, dict]] = []
        self.package = ""

    def create_experiment(self, **kwargs):
        self.calls.append(("create_experiment", kwargs))
        return SimpleNamespace(experiment_id="exp-7")

    def create_recurring_run(self, **kwargs):
        self.calls.append(("create_recurring_run", kwargs))
        self.package = Path(kwargs["pipeline_package_path"]).read_text(encoding="utf-8")
        return SimpleNamespace(recurring_run_id="rr-42")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("cron, kfp_cron", [("0 3 * * *", "0 0 3 * * *"),
                                            ("0 30 2 * * MON-FRI", "0 30 2 * * MON-FRI")])
def test_recurring_run_gets_six_fields_one_at_a_time_and_no_catch_up(cron, kfp_cron):
    clients: list[FakeClient] = []

    def factory(host):
        clients.append(FakeClient(host))
        return clients[-1]

    made = schedule.schedule_pipeline("retraining", cron, "http://kfp.example:8080",
                                      experiment="nightly",
                                      params=["new_data_uri=s3://b/new", "margin=0.5"],
                                      client_factory=factory)
    (client,) = clients
    assert client.host == "http://kfp.example:8080"
    (_, exp), (_, run) = client.calls
    assert exp == {"name": "nightly"}
    package = run.pop("pipeline_package_path")
    description = run.pop("description")
    assert run == {"experiment_id": "exp-7", "job_name": f"retraining ({cron})",
                   "cron_expression": kfp_cron, "max_concurrency": 1, "no_catchup": True,
                   "params": {"new_data_uri": "s3://b/new", "margin": 0.5}, "enabled": True}
    assert package.endswith("retraining.yaml") and "Schedule:" in description
    assert next(yaml.safe_load_all(client.package))["pipelineInfo"]["name"] == "tlt-retraining"
    assert (made.recurring_run_id, made.experiment_id) == ("rr-42", "exp-7")
    assert made.schedule.form == ("five-field" if len(cron.split()) == 5 else "six-field")


def test_cli_says_which_cron_form_was_used(monkeypatch):
    monkeypatch.setattr(schedule, "connect", FakeClient)
    code, out, err = run_main(main, "schedule", "retraining", "--cron", "@daily", "--host",
                              "http://kfp.example", "--param", "new_data_uri=/data/new")
    assert code == 0, err
    assert "cron: macro @daily given: five-field '0 0 * * *' (Argo), six-field '0 0 0 * * *' " \
           "(Kubeflow)" in out
    assert "recurring run rr-42 'retraining (@daily)' of retraining in experiment tlt-scheduled" \
           in out


def test_invalid_cron_is_one_line_before_any_connection():
    def factory(host):
        raise AssertionError("must not connect with a bad cron")

    with pytest.raises(SpecError, match=r"hour field is '25', expected 0-23"):
        schedule.schedule_pipeline("retraining", "0 25 * * *", "http://x", client_factory=factory)
    code, out, err = run_main(main, "schedule", "retraining", "--cron", "0 3 * *", "--host",
                              "http://127.0.0.1:1")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "tlt-pipeline: error: cron expression '0 3 * *' has 4 field(s), expected 5 (minute hour "
        "day-of-month month day-of-week) or 6 with seconds first (second minute hour "
        "day-of-month month day-of-week)"]


def test_no_kfp_host_reachable_is_one_line():
    host = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(PipelineError) as err:
        schedule.connect(host)
    assert str(err.value) == f"no Kubeflow Pipelines API reachable at {host}: [Errno 111] " \
                             f"Connection refused"
    code, out, stderr = run_main(main, "schedule", "retraining", "--cron", "0 3 * * *",
                                 "--host", host, "--param", "new_data_uri=/data/new")
    assert code == 1
    assert stderr.strip().splitlines() == [f"tlt-pipeline: error: {err.value}"]


def test_unknown_parameter_is_refused_before_connecting():
    with pytest.raises(PipelineError, match="--param nope: unknown parameter"):
        schedule.schedule_pipeline("retraining", "@hourly", "http://x", params=["nope=1"],
                                   client_factory=lambda host: pytest.fail("connected"))


def test_server_refusal_is_one_line():
    from kfp_server_api.exceptions import ApiException

    class Refusing(FakeClient):
        def create_recurring_run(self, **kwargs):
            raise ApiException(status=400, reason="Bad Request")

    with pytest.raises(PipelineError) as err:
        schedule.schedule_pipeline("retraining", "@weekly", "http://kfp.example",
                                   client_factory=Refusing)
    assert str(err.value) == ("KFP at http://kfp.example refused the recurring run of retraining: "
                              "Bad Request")
