"""Cron expressions for recurring runs (tlt.scheduling): five/six fields in, both forms out."""

from __future__ import annotations

import datetime as dt

import pytest

from tlt.errors import SpecError
from tlt.scheduling import next_runs, parse_cron


def test_five_field_gets_seconds_for_kfp():
    s = parse_cron("0 3 * * *")
    assert (s.form, s.kfp_cron, s.argo_cron) == ("five-field", "0 0 3 * * *", "0 3 * * *")
    assert s.note == "five-field cron given; Kubeflow gets '0 0 3 * * *' (second 0 added)"


def test_six_field_with_seconds_first_drops_them_for_argo():
    s = parse_cron("  0  30 2 * * MON-FRI ")
    assert (s.form, s.kfp_cron, s.argo_cron) == ("six-field", "0 30 2 * * MON-FRI",
                                                 "30 2 * * MON-FRI")
    assert s.given == "0 30 2 * * MON-FRI"
    assert s.note == "six-field cron (with seconds) given; Argo gets '30 2 * * MON-FRI' (seconds dropped)"


def test_macros_and_rich_syntax():
    s = parse_cron("@daily")
    assert (s.form, s.kfp_cron, s.argo_cron) == ("macro", "0 0 0 * * *", "0 0 * * *")
    assert parse_cron("*/15 9-17 1,15 jan-jun ?").argo_cron == "*/15 9-17 1,15 jan-jun ?"
    # the example of kfp.Client.create_recurring_run's docstring: weekdays at 09:00
    assert parse_cron("0 0 9 ? * 2-6").argo_cron == "0 9 ? * 2-6"
    runs = next_runs(parse_cron("0 3 * * *"), dt.datetime(2026, 11, 28, 10, 0))
    assert runs == [dt.datetime(2026, 11, d, 3, 0) for d in (29, 30)] + [dt.datetime(2026, 12, 1, 3, 0)]


@pytest.mark.parametrize("expr, message", [
    ("61 * * * *", "cron expression '61 * * * *': minute field is '61', expected 0-59 "
                   "(a number, *, a range a-b, a list a,b or a step /n)"),
    ("0 61 * * * *", "cron expression '0 61 * * * *': minute field is '61', expected 0-59"),
    ("* 24 * * *", "hour field is '24', expected 0-23"),
    ("* * 0 * *", "day-of-month field is '0', expected 1-31"),
    ("* * * 13 *", "month field is '13', expected 1-12 or JAN-DEC"),
    ("* * * * 7", "day-of-week field is '7', expected 0-6 or SUN-SAT"),
    ("* * L * *", "day-of-month field is 'L', expected 1-31"),  # croniter-only syntax
    ("* * * * 1#2", "day-of-week field is '1#2', expected 0-6"),
    ("30-5 * * * *", "minute field is '30-5', expected 0-59"),
    ("*/0 * * * *", "minute field is '*/0', expected 0-59"),
    ("60 0 3 * * *", "second field is '60', expected 0-59"),
    ("30 0 3 * * *", "second field is '30', expected 0 (the Argo CronWorkflow runs on whole "
                     "minutes)"),
    ("* * * *", "cron expression '* * * *' has 4 field(s), expected 5 (minute hour "
                "day-of-month month day-of-week) or 6 with seconds first"),
    ("", "cron expression '' has 0 field(s), expected 5"),
    ("@reboot", "cron expression '@reboot' has 1 field(s), expected 5"),
])
def test_invalid_expressions_name_the_field(expr, message):
    with pytest.raises(SpecError) as err:
        parse_cron(expr)
    assert message in str(err.value)
    assert "\n" not in str(err.value) and err.value.field == "cron"
