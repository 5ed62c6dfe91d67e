"""The daily report rollup: counts per (agreement, UTC day of receipt), kept current.

A transparency report counts requests by the day they were received.  Aggregating the raw
tables costs time in proportion to the requests counted (seconds for one agreement-year,
tens of seconds for every agreement, at a few million requests on PostgreSQL);
``report_daily`` and ``report_daily_refusals`` (migration 0007) hold the same counts per
agreement-day, so a report reads one row per agreement-day whatever the volume.

**How it stays right.**  Every fact a report counts changes by a lifecycle step, and every
step goes through ``service.requests._record`` and is written by ``_write_steps``, which
hands the batch here: :func:`record_steps` turns the steps into increments and applies them
with one upsert (``INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n``) in the *same
session*, so the increment commits or rolls back with the step — including a group-commit
unit that fails inside its savepoint (``api/writer.py``).  What each step adds:

=====================  =================================================================
step                   counts
=====================  =================================================================
receive                ``received`` (and ``pending``)
decide                 ``refused_by_engine`` and one per failed rule, or ``sent_to_review``
(any) → approved       ``approved``
review_refuse          ``refused_by_reviewer``
match / no_match       ``matched``, ``ambiguous`` or ``no_match`` (the matcher's status)
disclose               ``disclosed`` and ``new_information`` or ``already_known``
notify / exempt        ``notified`` / ``exempted``
lift_exemption         ``exempted`` −1, ``notified`` +1 (renew_exemption: nothing)
→ a terminal state     ``pending`` −1
=====================  =================================================================

Each count equals its definition over the raw tables because the state machine
(``domain.lifecycle``) lets each of these steps happen at most once per request ("reached
approval" once, one decision, one match, one disclosure, one notice).  The reference
definition stays the raw aggregation (``service.reports.tally_sql``, itself held equal to
the per-request ``tally(iter_facts(...))``); ``tests/service/test_rollup.py`` holds the
rollup equal to it over random request histories on SQLite and PostgreSQL, and
``safehaven reports rebuild`` (``reports.rebuild_rollup``) recomputes the rollup from the
raw tables for an operator's repair.

**Locks.**  ``_write_steps`` calls :func:`record_steps` *after* the ledger append, which
locks the single ``ledger_state`` row until commit; every writer therefore takes its
rollup row locks while already holding the ledger's, so the rollup adds no new point of
contention and no lock-order deadlock between writers.  Within one call, increments are
summed per key and applied in key order all the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from safehaven.domain.statistics import COUNT_FIELDS, Counts
from safehaven.store.models import ReportDailyRow, ReportRefusalRow

_DAILY = cast(Table, ReportDailyRow.__table__)
_REFUSALS = cast(Table, ReportRefusalRow.__table__)
_PENDING = frozenset(("received", "decided", "in_review", "approved", "matched", "disclosed"))
_STATUS = {"matched": "matched", "ambiguous": "ambiguous", "no_match": "no_match"}

Key = tuple[str, date]


def receipt_day(received_at: datetime, dialect: str) -> date:
    """The day a request counts under: what the store's ``received_at`` says, in UTC.

    PostgreSQL stores an instant (``timestamptz``) and the report takes its UTC date.
    SQLite stores the datetime's wall-clock text without its offset (everything the
    service writes is UTC), and the report takes that text's date; an aware non-UTC value
    therefore counts under its wall-clock date there, as the raw aggregation would.
    """
    if received_at.tzinfo is None or dialect == "sqlite":  # naive: UTC, as ``as_utc`` says
        return received_at.date()
    return received_at.astimezone(UTC).date()


def increments(
    dialect: str, steps: Iterable[tuple[Any, Mapping[str, Any], Mapping[str, Any]]]
) -> tuple[dict[Key, Counter[str]], Counter[tuple[str, date, str]]]:
    """Counter increments per (agreement, day) and per (agreement, day, failed rule).

    ``steps``: ``(request row, transition values, ledger entry)`` per lifecycle step, as
    ``service.requests`` queues them; the entry's ``detail`` carries what the transition
    alone does not say (the decision's outcome and rules, the matcher's status, whether a
    disclosure was new information).
    """
    counts: dict[Key, Counter[str]] = {}
    rules: Counter[tuple[str, date, str]] = Counter()
    for row, values, entry in steps:
        key = (row.agreement_id, receipt_day(row.received_at, dialect))
        c = counts.get(key)
        if c is None:
            c = counts[key] = Counter()
        before, after, event = values["from_state"], values["to_state"], values["event"]
        if before is None:
            c["received"] += 1
        c["pending"] += (after in _PENDING) - (before in _PENDING)
        if after == "approved":
            c["approved"] += 1
        detail = entry.get("detail") or {}
        if event == "decide":
            outcome = detail.get("outcome")
            if outcome == "refused":
                c["refused_by_engine"] += 1
                for rule in detail.get("rules") or ():
                    if not rule["passed"]:
                        rules[(*key, str(rule["id"]))] += 1
            elif outcome == "needs_review":
                c["sent_to_review"] += 1
        elif event == "review_refuse":
            c["refused_by_reviewer"] += 1
        elif event in ("match", "no_match"):
            c[_STATUS[detail["status"]]] += 1
        elif event == "disclose":
            c["disclosed"] += 1
            if detail.get("new_information") is True:
                c["new_information"] += 1
            elif detail.get("new_information") is False:
                c["already_known"] += 1
        elif event == "notify":
            c["notified"] += 1
        elif event == "exempt":
            c["exempted"] += 1
        elif event == "lift_exemption":  # told after all: no longer counted as exempted
            c["exempted"] -= 1
            c["notified"] += 1
    return counts, rules


def _dialect_insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


_STATEMENTS: dict[str, tuple[Any, Any]] = {}


def _statements(dialect: str) -> tuple[Any, Any]:
    """The two upserts, built once per dialect (the submit path runs them every time)."""
    found = _STATEMENTS.get(dialect)
    if found is None:
        ins = _dialect_insert(dialect)
        daily = ins(_DAILY)
        daily = daily.on_conflict_do_update(
            index_elements=[_DAILY.c.agreement_id, _DAILY.c.day],
            set_={name: _DAILY.c[name] + daily.excluded[name] for name in COUNT_FIELDS})
        refusals = ins(_REFUSALS)
        refusals = refusals.on_conflict_do_update(
            index_elements=[_REFUSALS.c.agreement_id, _REFUSALS.c.day, _REFUSALS.c.rule],
            set_={"n": _REFUSALS.c.n + refusals.excluded.n})
        found = _STATEMENTS[dialect] = (daily, refusals)
    return found


def record_steps(
    session: Session,
    transitions: Sequence[tuple[Any, Mapping[str, Any]]],
    entries: Sequence[Mapping[str, Any]],
) -> None:
    """Apply the report increments of a batch of lifecycle steps, in ``session``.

    Called by ``service.requests._write_steps`` with the transitions and ledger entries it
    has just written (one entry per transition, same order).  A batch usually touches one
    key (a submit's three steps), so this is one statement per use case.
    """
    conn = session.connection()
    dialect = conn.dialect.name
    counts, rules = increments(
        dialect, ((row, values, entry)
                  for (row, values), entry in zip(transitions, entries, strict=True)))
    daily, refusals = _statements(dialect)
    rows = [{"agreement_id": a, "day": d, **{n: c[n] for n in COUNT_FIELDS}}
            for (a, d), c in sorted(counts.items()) if any(c.values())]
    if rows:
        conn.execute(daily, rows)
    if rules:
        conn.execute(refusals, [{"agreement_id": a, "day": d, "rule": r, "n": n}
                                for (a, d, r), n in sorted(rules.items())])


def _in_range(table: Table, start: date | None, end: date | None,
              agreement: str | None = None) -> list[Any]:
    cond: list[Any] = []
    if start is not None:
        cond.append(table.c.day >= start)
    if end is not None:
        cond.append(table.c.day <= end)
    if agreement is not None:
        cond.append(table.c.agreement_id == agreement)
    return cond


def read_daily(
    session: Session, start: date | None, end: date | None, agreement: str | None
) -> dict[Key, Counts]:
    """The rollup's counts per (agreement, day) for days in ``[start, end]`` (``None``: no
    bound), for one agreement or (``None``) all."""
    counts_q = select(_DAILY.c.agreement_id, _DAILY.c.day,
                      *(_DAILY.c[n] for n in COUNT_FIELDS)
                      ).where(*_in_range(_DAILY, start, end, agreement))
    rules_q = select(_REFUSALS.c.agreement_id, _REFUSALS.c.day, _REFUSALS.c.rule,
                     _REFUSALS.c.n).where(*_in_range(_REFUSALS, start, end, agreement))
    out: dict[Key, Counts] = {}
    for agreement_id, day, *values in session.execute(counts_q):
        out[(agreement_id, day)] = Counts(**dict(zip(COUNT_FIELDS, values, strict=True)))
    for agreement_id, day, rule, n in session.execute(rules_q):
        found = out.get((agreement_id, day))
        if found is None:  # refusals without a counts row cannot happen; keep them visible
            found = out[(agreement_id, day)] = Counts()
        found.refused_by_rule[rule] += n
    return out


def lock(session: Session) -> None:
    """Hold off every rollup writer until this transaction ends (before a rebuild reads).

    PostgreSQL: ``EXCLUSIVE`` blocks the writers' upserts but not readers (reports keep
    answering).  A writer that has not yet reached its upsert waits here and adds its
    increment after the rebuild, to numbers that do not include it (its rows were not
    committed when the rebuild read); one that already upserted holds its row lock until it
    commits, so the lock is granted only after that and the rebuild's reads (each a fresh
    READ COMMITTED snapshot, all taken after the lock) include it.  Any transaction that
    changes a counted fact upserts a non-zero increment, so none slips between.  SQLite:
    the rebuild's ``BEGIN IMMEDIATE`` already holds the database's only write lock.
    """
    if session.connection().dialect.name == "postgresql":
        session.execute(text(
            "LOCK TABLE report_daily, report_daily_refusals IN EXCLUSIVE MODE"))


def replace(session: Session, daily: Mapping[Key, Counts],
            start: date | None = None, end: date | None = None) -> tuple[int, int]:
    """Replace the rollup's days in ``[start, end]`` (``None``: no bound) with ``daily``,
    which must hold only days in that range; returns (count rows, refusal rows) written."""
    outside = [day for _, day in daily
               if (start is not None and day < start) or (end is not None and day > end)]
    if outside:
        raise ValueError(f"replace: day {min(outside)} is outside the range being replaced")
    session.execute(delete(_REFUSALS).where(*_in_range(_REFUSALS, start, end)))
    session.execute(delete(_DAILY).where(*_in_range(_DAILY, start, end)))
    rows = [{"agreement_id": a, "day": d, **{n: getattr(c, n) for n in COUNT_FIELDS}}
            for (a, d), c in sorted(daily.items())]
    refusals = [{"agreement_id": a, "day": d, "rule": rule, "n": n}
                for (a, d), c in sorted(daily.items())
                for rule, n in sorted(c.refused_by_rule.items()) if n]
    conn = session.connection()
    if rows:
        conn.execute(_DAILY.insert(), rows)
    if refusals:
        conn.execute(_REFUSALS.insert(), refusals)
    return len(rows), len(refusals)


__all__ = ["increments", "lock", "read_daily", "receipt_day", "record_steps", "replace"]
