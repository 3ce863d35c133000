"""Cron expressions for scheduled retraining: five or six fields in, both forms out.

``kfp.Client.create_recurring_run`` takes six fields with the seconds first
(``second minute hour day-of-month month day-of-week``); Argo's CronWorkflow takes the standard
five (``minute hour day-of-month month day-of-week``). Both run robfig/cron, so only its syntax
is accepted: numbers, ``*``, ``?``, ranges ``a-b``, lists ``a,b``, steps ``/n``, month and weekday
names, and the macros ``@yearly @annually @monthly @weekly @daily @midnight @hourly``
(croniter's ``L``, ``W``, ``#`` and ``H`` extensions are refused: the schedulers would reject
them later, on the cluster). Validation is croniter's, after a field-by-field check that names
the bad field.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from croniter import croniter

from tlt.errors import SpecError

__all__ = ["CronSchedule", "parse_cron", "next_runs"]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# name, lowest, highest, names (index + offset = value)
_SECOND = ("second", 0, 59, ())
_FIVE = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day-of-month", 1, 31, ()),
         ("month", 1, 12, _MONTHS), ("day-of-week", 0, 6, _DAYS))
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
_SHAPES = "a number, *, a range a-b, a list a,b or a step /n"


@dataclass(frozen=True)
class CronSchedule:
    """A checked schedule in both schedulers' forms.

    Attributes:
        given: the expression as given (whitespace normalised).
        form: ``five-field``, ``six-field`` or ``macro``.
        kfp_cron: six fields, seconds first, for ``kfp.Client.create_recurring_run``.
        argo_cron: five fields, for an Argo CronWorkflow's ``schedule``.
        note: one line saying which form was given and what each scheduler gets.
    """

    given: str
    form: str
    kfp_cron: str
    argo_cron: str
    note: str


def _bad(expr: str, name: str, lo: int, hi: int, names: tuple, token: str) -> SpecError:
    span = f"{lo}-{hi}" + (f" or {names[0]}-{names[-1]}" if names else "")
    return SpecError(f"cron expression {expr!r}: {name} field is {token!r}, expected {span} "
                     f"({_SHAPES})", field="cron")


def _value(text: str, names: tuple) -> int | None:
    if text.isdigit():
        return int(text)
    if text.upper() in names:
        return names.index(text.upper()) + (1 if names is _MONTHS else 0)
    return None


def _check_field(expr: str, token: str, spec: tuple) -> None:
    """robfig/cron's grammar and bounds for one field; SpecError naming the field otherwise."""
    name, lo, hi, names = spec
    for part in token.split(","):
        base, slash, step = part.partition("/")
        if slash and not (step.isdigit() and int(step) > 0):
            raise _bad(expr, name, lo, hi, names, token)
        if base in ("*", "?"):
            continue
        first, dash, last = base.partition("-")
        a = _value(first, names)
        b = _value(last, names) if dash else a
        if a is None or b is None or not lo <= a <= b <= hi:
            raise _bad(expr, name, lo, hi, names, token)


def _croniter_check(expr: str, five: str, kfp: str) -> None:
    if not (croniter.is_valid(five) and croniter.is_valid(kfp, second_at_beginning=True)):
        raise SpecError(f"cron expression {expr!r} is not valid cron (croniter rejects it)",
                        field="cron")


def parse_cron(expression: str) -> CronSchedule:
    """Check a five- or six-field cron expression (or a macro) and return both forms.

    Args:
        expression: ``"0 3 * * *"`` (five fields), ``"0 0 3 * * *"`` (six, seconds first) or
            ``"@daily"``.

    Returns:
        A `CronSchedule` with ``kfp_cron`` (six fields) and ``argo_cron`` (five fields).

    Raises:
        SpecError: one line naming the bad field and what it expects, a wrong number of fields,
            or a seconds field other than 0 (an Argo CronWorkflow runs on whole minutes).
    """
    expr = " ".join(str(expression).split())
    if expr.lower() in _MACROS:
        five = _MACROS[expr.lower()]
        return CronSchedule(expr, "macro", f"0 {five}", five,
                            f"macro {expr} given: five-field {five!r} (Argo), "
                            f"six-field '0 {five}' (Kubeflow)")
    fields = expr.split(" ") if expr else []
    if len(fields) not in (5, 6):
        raise SpecError(f"cron expression {expr!r} has {len(fields)} field(s), expected 5 "
                        "(minute hour day-of-month month day-of-week) or 6 with seconds first "
                        "(second minute hour day-of-month month day-of-week)", field="cron")
    specs = ((_SECOND,) if len(fields) == 6 else ()) + _FIVE
    for token, spec in zip(fields, specs):
        _check_field(expr, token, spec)
    if len(fields) == 6 and fields[0] not in ("0", "00"):
        raise SpecError(f"cron expression {expr!r}: second field is {fields[0]!r}, expected 0 "
                        "(the Argo CronWorkflow runs on whole minutes)", field="cron")
    five = " ".join(fields[-5:])
    kfp = f"0 {five}"
    _croniter_check(expr, five, kfp)
    if len(fields) == 5:
        note = f"five-field cron given; Kubeflow gets {kfp!r} (second 0 added)"
    else:
        note = f"six-field cron (with seconds) given; Argo gets {five!r} (seconds dropped)"
    return CronSchedule(expr, "five-field" if len(fields) == 5 else "six-field", kfp, five, note)


def next_runs(schedule: CronSchedule, after: _dt.datetime, count: int = 3) -> list[_dt.datetime]:
    """The next ``count`` run times after ``after`` (same time zone as ``after``)."""
    it = croniter(schedule.argo_cron, after)
    return [it.get_next(_dt.datetime) for _ in range(count)]
