"""What each role is shown of a request.  Each view is an allow-list, never a deny-list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Integer, Row, Select, bindparam, select
from sqlalchemy.orm import Session

from safehaven.service import requests as svc
from safehaven.service.clock import as_utc
from safehaven.store.models import DecisionRow, DisclosureRow, MatchRow, RequestRow

Outcome = tuple[MatchRow | None, DisclosureRow | None]


def _outcomes(session: Session, rows: Sequence[RequestRow]) -> dict[int, Outcome]:
    """Each request's match and disclosure, two queries for any number of requests."""
    ids = [r.id for r in rows]
    found: dict[int, list[Any]] = {i: [None, None] for i in ids}
    if ids:
        for m in session.execute(_MATCHES_OF, {"ids": ids}).scalars():
            found[m.request_id][0] = m
        for d in session.execute(_DISCLOSURES_OF, {"ids": ids}).scalars():
            found[d.request_id][1] = d
    return {i: (m, d) for i, (m, d) in found.items()}


# Built once, with an expanding parameter for the ids: see ``_AGENCY_PAGE`` below.
_MATCHES_OF = select(MatchRow).where(MatchRow.request_id.in_(bindparam("ids", expanding=True)))
_DISCLOSURES_OF = select(DisclosureRow).where(
    DisclosureRow.request_id.in_(bindparam("ids", expanding=True)))


# --- the agency's view ------------------------------------------------------------------
#
# Read with Core, in one statement: a request's columns, its decision's, its match status
# and its disclosure, by outer joins on the one-to-one tables.  Why not mapped objects: the
# agency's poll and list are the most frequent reads of all, and building a request, a
# decision, a match and a disclosure object per row (four queries) cost two to three times
# the SQL.  The body is never selected: the agency's view does not show it.

_DECISION_LABEL = "decision_"
_AGENCY_COLUMNS = (
    RequestRow.public_id, RequestRow.request_key, RequestRow.requester,
    RequestRow.agreement_id, RequestRow.purpose, RequestRow.made_on, RequestRow.received_at,
    RequestRow.state,
    *(getattr(DecisionRow, c).label(_DECISION_LABEL + c) for c in svc.DECISION_VIEW_COLUMNS),
    MatchRow.status.label("match_status"),
    DisclosureRow.fields.label("disclosed_fields"), DisclosureRow.disclosed_at,
)
_AGENCY_FROM = (
    RequestRow.__table__
    .outerjoin(DecisionRow.__table__, DecisionRow.request_id == RequestRow.id)
    .outerjoin(MatchRow.__table__, MatchRow.request_id == RequestRow.id)
    .outerjoin(DisclosureRow.__table__, DisclosureRow.request_id == RequestRow.id)
)


#: One request by public id (the caller checks that it is the agency's own).
_AGENCY_ONE = select(*_AGENCY_COLUMNS).select_from(_AGENCY_FROM).where(
    RequestRow.public_id == bindparam("public_id"))


def _agency_page(*, in_state: bool) -> Select[Any]:
    """One agency's requests, newest first.

    ``ix_requests_requester_id`` (0009) walks the agency's rows backwards and stops after
    ``limit``; without it every call read and sorted all of the agency's requests, a cost
    that grew with each request it had ever made (tests/store/test_query_plans.py).
    """
    query = (select(*_AGENCY_COLUMNS).select_from(_AGENCY_FROM)
             .where(RequestRow.requester == bindparam("requester"))
             .order_by(RequestRow.id.desc()).limit(bindparam("limit", type_=Integer)))
    return query.where(RequestRow.state == bindparam("state")) if in_state else query


# Built once: a statement's cache key is computed on first use and kept, and building and
# keying this one per call cost as much as running it.
_AGENCY_PAGE = {False: _agency_page(in_state=False), True: _agency_page(in_state=True)}


def agency_page_query(requester: str, *, state: str | None, limit: int) -> Select[Any]:
    """The statement and values :func:`agency_page` runs (for query-plan tests)."""
    return _AGENCY_PAGE[bool(state)].params(requester=requester, state=state, limit=limit)


def agency_request(db: Connection | Session, public_id: str) -> Row[Any] | None:
    """One request's agency-view row (:func:`agency_view_of`), or ``None``."""
    return db.execute(_AGENCY_ONE, {"public_id": public_id}).first()


def agency_page(db: Connection | Session, requester: str, *, state: str | None,
                limit: int) -> list[dict[str, Any]]:
    """An agency's page of :func:`agency_view_of`, in one query."""
    rows = db.execute(_AGENCY_PAGE[bool(state)],
                      {"requester": requester, "state": state, "limit": limit})
    return [agency_view_of(row) for row in rows]


def agency_view_of(row: Row[Any]) -> dict[str, Any]:
    """What the requesting agency may see: its request's progress, the reasons, and only
    the released fields the decision permitted (checked again here, not only at release)."""
    values = row._mapping
    outcome = values[_DECISION_LABEL + "outcome"]
    decision = None if outcome is None else svc.decision_view(
        {c: values[_DECISION_LABEL + c] for c in svc.DECISION_VIEW_COLUMNS})
    disclosure = None
    if row.disclosed_fields is not None:
        permitted = set(decision["permitted_fields"]) if decision else set()
        disclosure = {
            "fields": {k: v for k, v in row.disclosed_fields.items() if k in permitted},
            "disclosed_at": as_utc(row.disclosed_at).isoformat(),
        }
    return {
        **svc.summary_of(row, decision),
        "outcome": outcome,
        "match": {"status": row.match_status} if row.match_status is not None else None,
        "disclosure": disclosure,
    }


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
