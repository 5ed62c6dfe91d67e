"""What each role is shown of a request.  Each view is an allow-list, never a deny-list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from safehaven.service import requests as svc
from safehaven.service.clock import as_utc
from safehaven.store.models import DisclosureRow, MatchRow, RequestRow

Outcome = tuple[MatchRow | None, DisclosureRow | None]


def _outcomes(session: Session, rows: Sequence[RequestRow]) -> dict[int, Outcome]:
    """Each request's match and disclosure, two queries for any number of requests."""
    ids = [r.id for r in rows]
    found: dict[int, list[Any]] = {i: [None, None] for i in ids}
    if ids:
        for m in session.execute(select(MatchRow).where(MatchRow.request_id.in_(ids))).scalars():
            found[m.request_id][0] = m
        for d in session.execute(
            select(DisclosureRow).where(DisclosureRow.request_id.in_(ids))
        ).scalars():
            found[d.request_id][1] = d
    return {i: (m, d) for i, (m, d) in found.items()}


def agency_view(session: Session, row: RequestRow) -> dict[str, Any]:
    """What the requesting agency may see: its request's progress, the reasons, and only
    the released fields the decision permitted (checked again here, not only at release)."""
    return agency_views(session, [row])[0]


def agency_views(session: Session, rows: Sequence[RequestRow]) -> list[dict[str, Any]]:
    """:func:`agency_view` for a page of requests in a fixed number of queries."""
    svc.load_related(session, rows, reviews=False)
    outcomes = _outcomes(session, rows)
    views = []
    for row in rows:
        match, disclosure = outcomes[row.id]
        released: dict[str, Any] | None = None
        if disclosure is not None:
            permitted = set(row.decision.permitted_fields) if row.decision else set()
            released = {k: v for k, v in disclosure.fields.items() if k in permitted}
        views.append({
            **svc.request_summary(row),
            "outcome": row.decision.outcome if row.decision else None,
            "match": {"status": match.status} if match else None,
            "disclosure": (
                {"fields": released,
                 "disclosed_at": as_utc(disclosure.disclosed_at).isoformat()}
                if disclosure is not None else None
            ),
        })
    return views


def reviewer_view(session: Session, row: RequestRow) -> dict[str, Any]:
    """Everything a reviewer needs to decide: the request as sent, the engine's reasons, the
    reviews so far; and what happened afterwards (match status, fields released)."""
    return reviewer_views(session, [row])[0]


def reviewer_views(session: Session, rows: Sequence[RequestRow]) -> list[dict[str, Any]]:
    """:func:`reviewer_view` for a queue of requests in a fixed number of queries."""
    views = svc.request_views(session, rows)
    outcomes = _outcomes(session, rows)
    exemptions = svc.exemption_history(session, [r.id for r in rows])
    for row, view in zip(rows, views, strict=True):
        view["exemption_history"] = exemptions[row.id]
        match, disclosure = outcomes[row.id]
        view["body"] = row.body
        view["approvals_needed"] = svc.approvals_needed(row)
        view["match"] = {"status": match.status, "score": match.score} if match else None
        view["disclosure"] = (
            {"fields": disclosure.fields, "new_information": disclosure.new_information}
            if disclosure else None
        )
    return views
