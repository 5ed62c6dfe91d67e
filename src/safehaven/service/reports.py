"""Transparency reports from the store: per agreement, per period, in JSON, CSV or HTML."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from safehaven.domain.statistics import (
    COUNT_FIELDS,
    Counts,
    Period,
    RequestFacts,
    suppress,
    tally,
)
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


def build_report(session: Session, q: ReportQuery, *, public: bool = True) -> dict[str, Any]:
    """The report as data: one row per (agreement, period) plus a total per agreement."""
    table = tally(iter_facts(session, q), q.period)
    totals: dict[str, Counts] = {}
    for (agreement, _), counts in table.items():
        total = totals.setdefault(agreement, Counts())
        for name in COUNT_FIELDS:
            setattr(total, name, getattr(total, name) + getattr(counts, name))
        total.refused_by_rule.update(counts.refused_by_rule)
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


__all__ = ["ReportQuery", "build_report", "iter_facts", "report_csv", "suppress"]
