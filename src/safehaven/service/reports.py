"""Transparency reports from the store: per agreement, per period, in JSON, CSV or HTML.

Where the numbers come from: ``build_report`` reads the daily rollup (``service.rollup``,
one row per agreement-day, maintained with every lifecycle step).  The definition they
must equal is the raw aggregation over the requests and their lifecycle rows —
``tally(iter_facts(...))`` per request in Python, ``tally_sql`` / ``tally_days`` in the
database — kept here as the reference, for tests and for ``rebuild_rollup``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    select,
    text,
)
from sqlalchemy.orm import Session

from safehaven.domain.statistics import (
    COUNT_FIELDS,
    Counts,
    Period,
    RequestFacts,
    period_key,
    suppress,
    tally,
)
from safehaven.service import rollup
from safehaven.service.clock import as_utc
from safehaven.store.models import (
    DecisionRow,
    DisclosureRow,
    MatchRow,
    NotificationRow,
    RequestRow,
    ReviewRow,
    TransitionRow,
)


@dataclass(frozen=True)
class ReportQuery:
    agreement: str | None
    start: date
    end: date  # inclusive
    period: Period = Period.MONTH


def _bounds(q: ReportQuery) -> tuple[datetime, datetime]:
    return (
        datetime.combine(q.start, time.min, UTC),
        datetime.combine(q.end + timedelta(days=1), time.min, UTC),
    )


def iter_facts(session: Session, q: ReportQuery) -> Iterator[RequestFacts]:
    lo, hi = _bounds(q)
    approved = exists().where(
        and_(TransitionRow.request_id == RequestRow.id, TransitionRow.to_state == "approved")
    )
    review_refused = exists().where(
        and_(ReviewRow.request_id == RequestRow.id, ReviewRow.verdict == "refuse")
    )
    stmt = (
        select(
            RequestRow.agreement_id,
            RequestRow.received_at,
            RequestRow.state,
            DecisionRow.outcome,
            DecisionRow.rules,
            review_refused.label("review_refused"),
            approved.label("approved"),
            MatchRow.status,
            DisclosureRow.id,
            DisclosureRow.new_information,
            NotificationRow.kind,
        )
        .outerjoin(DecisionRow, DecisionRow.request_id == RequestRow.id)
        .outerjoin(MatchRow, MatchRow.request_id == RequestRow.id)
        .outerjoin(DisclosureRow, DisclosureRow.request_id == RequestRow.id)
        .outerjoin(NotificationRow, NotificationRow.request_id == RequestRow.id)
        .where(RequestRow.received_at >= lo, RequestRow.received_at < hi)
        .order_by(RequestRow.id)
    )
    if q.agreement:
        stmt = stmt.where(RequestRow.agreement_id == q.agreement)
    for row in session.execute(stmt.execution_options(yield_per=5000)):
        (
            agreement,
            received_at,
            state,
            outcome,
            rules,
            refused,
            reached,
            match_status,
            disclosure_id,
            new_info,
            notice,
        ) = row
        failed = tuple(r["id"] for r in (rules or []) if not r["passed"])
        yield RequestFacts(
            agreement=agreement,
            received_on=as_utc(received_at).date(),
            state=state,
            outcome=outcome,
            failed_rules=failed,
            review_refused=bool(refused),
            reached_approval=bool(reached),
            match_status=match_status,
            disclosed=disclosure_id is not None,
            new_information=new_info,
            notice=notice,
        )


def _day(session: Session) -> Any:
    """The UTC calendar day a request was received, as SQL (what ``as_utc(..).date()`` is)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", RequestRow.received_at), Date)
    return func.date(RequestRow.received_at)  # SQLite keeps UTC text; date() drops time


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


_REFUSED_RULES_SQL = {
    # Failed rules of engine refusals, counted per occurrence as ``Counter.update`` does.
    # PostgreSQL reads the generated ``failed_rules`` column (migration 0004) instead of
    # parsing every decision's whole rule list.
    "postgresql": """
        SELECT r.agreement_id, (r.received_at AT TIME ZONE 'UTC')::date AS day,
               e AS rule, count(*)
        FROM requests r JOIN decisions d ON d.request_id = r.id
        CROSS JOIN LATERAL jsonb_array_elements_text(d.failed_rules) AS e
        WHERE d.outcome = 'refused' {bounds} {agreement}
        GROUP BY 1, 2, 3""",
    "sqlite": """
        SELECT r.agreement_id, date(r.received_at) AS day,
               json_extract(e.value, '$.id') AS rule, count(*)
        FROM requests r JOIN decisions d ON d.request_id = r.id, json_each(d.rules) AS e
        WHERE d.outcome = 'refused' AND NOT json_extract(e.value, '$.passed')
          {bounds} {agreement}
        GROUP BY 1, 2, 3""",
}


def tally_days(
    session: Session, q: ReportQuery | None = None
) -> dict[tuple[str, date], Counts]:
    """The raw aggregation: counts per (agreement, UTC day received), by the database.

    This is the *reference definition* of the report's numbers at volume (``tally_sql``
    folds it into periods; ``rebuild_rollup`` stores it), held equal to the per-request
    ``tally(iter_facts(...))`` by ``tests/service/test_reports_sql.py``.  ``q`` limits it
    to an agreement and a date range (its period is ignored); ``None`` counts everything.

    Four grouped queries: the per-request facts (one-to-one joins), the two "did it ever
    happen" facts as semi-joins (so the planner can hash them rather than probe per row),
    and the refusal reasons from the decision's rule list.  Its cost grows with the
    requests counted, which is why reports read the rollup instead.
    """
    if session.get_bind().dialect.name == "postgresql":
        # JIT compilation costs PostgreSQL ~2 s per query of this shape, more than the
        # query itself: these are scans and hash aggregates, not long-running analytics.
        session.execute(text("SET LOCAL jit = off"))
    day = _day(session).label("day")
    where: list[Any] = []
    params: dict[str, Any] = {}
    if q is not None:
        lo, hi = _bounds(q)
        where += [RequestRow.received_at >= lo, RequestRow.received_at < hi]
        params.update(lo=lo, hi=hi)
    agreement = q.agreement if q is not None else None
    if agreement:
        where.append(RequestRow.agreement_id == agreement)
        params["agreement"] = agreement

    def n(cond: Any) -> Any:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    facts = (
        select(
            RequestRow.agreement_id, day, func.count(),
            n(DecisionRow.outcome == "refused"),
            n(DecisionRow.outcome == "needs_review"),
            n(MatchRow.status == "matched"),
            n(MatchRow.status == "ambiguous"),
            n(MatchRow.status == "no_match"),
            n(DisclosureRow.id.is_not(None)),
            n(and_(DisclosureRow.id.is_not(None), DisclosureRow.new_information.is_(True))),
            n(and_(DisclosureRow.id.is_not(None), DisclosureRow.new_information.is_(False))),
            n(NotificationRow.kind == "notified"),
            n(NotificationRow.kind == "exempted"),
            n(RequestRow.state.in_(_PENDING)),
        )
        .outerjoin(DecisionRow, DecisionRow.request_id == RequestRow.id)
        .outerjoin(MatchRow, MatchRow.request_id == RequestRow.id)
        .outerjoin(DisclosureRow, DisclosureRow.request_id == RequestRow.id)
        .outerjoin(NotificationRow, NotificationRow.request_id == RequestRow.id)
        .where(*where)
        .group_by(RequestRow.agreement_id, day)
    )
    table: dict[tuple[str, date], Counts] = {}

    def counts(agreement: str, day_value: Any) -> Counts:
        key = (agreement, _as_date(day_value))
        found = table.get(key)
        if found is None:
            found = table[key] = Counts()
        return found

    fields = ("received", "refused_by_engine", "sent_to_review", "matched", "ambiguous",
              "no_match", "disclosed", "new_information", "already_known", "notified",
              "exempted", "pending")
    for agreement_id, day_value, *values in session.execute(facts):
        c = counts(agreement_id, day_value)
        for name, value in zip(fields, values, strict=True):
            setattr(c, name, getattr(c, name) + int(value))

    semi = {
        "approved": exists().where(and_(TransitionRow.request_id == RequestRow.id,
                                        TransitionRow.to_state == "approved")),
        "refused_by_reviewer": exists().where(and_(ReviewRow.request_id == RequestRow.id,
                                                   ReviewRow.verdict == "refuse")),
    }
    for name, cond in semi.items():
        stmt = (select(RequestRow.agreement_id, day, func.count())
                .where(*where, cond).group_by(RequestRow.agreement_id, day))
        for agreement_id, day_value, value in session.execute(stmt):
            c = counts(agreement_id, day_value)
            setattr(c, name, getattr(c, name) + int(value))

    dialect = session.get_bind().dialect.name
    sql = _REFUSED_RULES_SQL["postgresql" if dialect == "postgresql" else "sqlite"]
    # Typed binds: on SQLite the bounds are then written exactly as the column stores them.
    stmt_rules = text(sql.format(
        bounds="AND r.received_at >= :lo AND r.received_at < :hi" if q is not None else "",
        agreement="AND r.agreement_id = :agreement" if agreement else ""))
    if q is not None:
        stmt_rules = stmt_rules.bindparams(bindparam("lo", type_=DateTime(timezone=True)),
                                           bindparam("hi", type_=DateTime(timezone=True)))
    for agreement_id, day_value, rule, value in session.execute(stmt_rules, params):
        counts(agreement_id, day_value).refused_by_rule[str(rule)] += int(value)
    return table


def _accumulate(into: Counts, counts: Counts) -> None:
    for name in COUNT_FIELDS:
        setattr(into, name, getattr(into, name) + getattr(counts, name))
    into.refused_by_rule.update(counts.refused_by_rule)


def fold(days: Mapping[tuple[str, date], Counts], period: Period
         ) -> dict[tuple[str, str], Counts]:
    """Sum per-day counts into (agreement, period key) rows with ``period_key``: the same
    grouping ``tally`` applies to each request's day."""
    table: dict[tuple[str, str], Counts] = {}
    for (agreement, day), counts in days.items():
        key = (agreement, period_key(day, period))
        found = table.get(key)
        if found is None:
            found = table[key] = Counts()
        _accumulate(found, counts)
    return table


def tally_sql(session: Session, q: ReportQuery) -> dict[tuple[str, str], Counts]:
    """The same table as ``tally(iter_facts(...))``, aggregated by the database.

    At national volume fetching one row per request into Python costs minutes; the
    database instead returns one row per (agreement, day) (:func:`tally_days`), folded
    into periods here with the same ``period_key``.
    """
    return fold(tally_days(session, q), q.period)


def tally_rollup(session: Session, q: ReportQuery) -> dict[tuple[str, str], Counts]:
    """The report's table from the daily rollup (``service.rollup``): one row read per
    agreement-day in range, whatever the number of requests, folded like ``tally_sql``."""
    return fold(rollup.read_daily(session, q.start, q.end, q.agreement or None), q.period)


@dataclass(frozen=True)
class RebuildResult:
    """What :func:`rebuild_rollup` wrote, and how much of it the rollup had wrong."""

    agreement_days: int  # count rows written
    refusal_rows: int  # (agreement, day, rule) rows written
    changed_days: int  # agreement-days whose counts differed from the rollup's (0: healthy)

    def as_dict(self) -> dict[str, int]:
        return {"agreement_days": self.agreement_days, "refusal_rows": self.refusal_rows,
                "changed_days": self.changed_days}


def rebuild_rollup(session: Session, start: date | None = None,
                   end: date | None = None) -> RebuildResult:
    """Recompute the rollup from the raw tables (an operator's repair), for the days
    received in ``[start, end]`` or (``None``) every day.

    Runs in the caller's transaction under :func:`rollup.lock`, so no writer's increment
    is lost or counted twice while the raw tables are read; writers wait for the length of
    the raw aggregation, which a day range shortens.  Also says how many agreement-days
    differed from what the rollup held, so an operator (or ``--check``, which rolls the
    transaction back) learns whether anything was wrong.
    """
    rollup.lock(session)
    before = rollup.read_daily(session, start, end, None)
    q = None
    if start is not None or end is not None:
        q = ReportQuery(None, start or date(1, 1, 1), end or date(9999, 12, 30))
    days = tally_days(session, q)
    written, refusals = rollup.replace(session, days, start, end)

    def differs(key: tuple[str, date]) -> bool:
        a, b = before.get(key), days.get(key)
        return a is None or b is None or a.as_dict() != b.as_dict()

    changed = sum(1 for key in before.keys() | days.keys() if differs(key))
    return RebuildResult(written, refusals, changed)


_PENDING = ("received", "decided", "in_review", "approved", "matched", "disclosed")


def build_report(session: Session, q: ReportQuery, *, public: bool = True) -> dict[str, Any]:
    """The report as data: one row per (agreement, period) plus a total per agreement.

    The numbers come from the daily rollup (:func:`tally_rollup`), which is kept equal to
    the raw aggregation (:func:`tally_sql`) in the transaction of every lifecycle step, so
    a report costs the same at ten million requests as at ten.
    """
    table = tally_rollup(session, q)
    totals: dict[str, Counts] = {}
    for (agreement, _), counts in table.items():
        _accumulate(totals.setdefault(agreement, Counts()), counts)
    return {
        "query": {
            "agreement": q.agreement,
            "from": q.start.isoformat(),
            "to": q.end.isoformat(),
            "period": q.period.value,
        },
        "public": public,
        "suppression": "counts from 1 to 9 are shown as <10" if public else None,
        "rows": [
            {"agreement": agreement, "period": key, **counts.as_dict(public=public)}
            for (agreement, key), counts in sorted(table.items())
        ],
        "totals": [
            {"agreement": agreement, **counts.as_dict(public=public)}
            for agreement, counts in sorted(totals.items())
        ],
    }


def report_csv(report: dict[str, Any]) -> str:
    """One line per (agreement, period); refusal reasons as ``refused:<rule>`` columns."""
    rules = sorted({r for row in report["rows"] for r in row["refused_by_rule"]})
    ratios = sorted({k for row in report["rows"] for k in row["ratios"]})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["agreement", "period", *COUNT_FIELDS, *(f"refused:{r}" for r in rules), *ratios]
    )
    for row in report["rows"]:
        writer.writerow(
            [
                row["agreement"],
                row["period"],
                *(row[c] for c in COUNT_FIELDS),
                *(row["refused_by_rule"].get(r, 0) for r in rules),
                *("" if row["ratios"].get(k) is None else row["ratios"][k] for k in ratios),
            ]
        )
    return buf.getvalue()


__all__ = ["RebuildResult", "ReportQuery", "build_report", "fold", "iter_facts",
           "rebuild_rollup", "report_csv", "suppress", "tally", "tally_days", "tally_rollup",
           "tally_sql"]
