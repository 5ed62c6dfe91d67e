"""What each role is shown of a request.  Each view is an allow-list, never a deny-list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from safehaven.service import requests as svc
from safehaven.service.clock import as_utc
from safehaven.store.models import DisclosureRow, MatchRow, RequestRow


def _match_and_disclosure(
    session: Session, row: RequestRow
) -> tuple[MatchRow | None, DisclosureRow | None]:
    match = session.execute(
        select(MatchRow).where(MatchRow.request_id == row.id)
    ).scalar_one_or_none()
    disclosure = session.execute(
        select(DisclosureRow).where(DisclosureRow.request_id == row.id)
    ).scalar_one_or_none()
    return match, disclosure


def agency_view(session: Session, row: RequestRow) -> dict[str, Any]:
    """What the requesting agency may see: its request's progress, the reasons, and only
    the released fields the decision permitted (checked again here, not only at release)."""
    match, disclosure = _match_and_disclosure(session, row)
    released: dict[str, Any] | None = None
    if disclosure is not None:
        permitted = set(row.decision.permitted_fields) if row.decision else set()
        released = {k: v for k, v in disclosure.fields.items() if k in permitted}
    return {
        **svc.request_summary(row),
        "outcome": row.decision.outcome if row.decision else None,
        "match": {"status": match.status} if match else None,
        "disclosure": (
            {"fields": released, "disclosed_at": as_utc(disclosure.disclosed_at).isoformat()}
            if disclosure is not None else None
        ),
    }


def reviewer_view(session: Session, row: RequestRow) -> dict[str, Any]:
    """Everything a reviewer needs to decide: the request as sent, the engine's reasons, the
    reviews so far; and what happened afterwards (match status, fields released)."""
    view = svc.request_view(session, row)
    match, disclosure = _match_and_disclosure(session, row)
    view["body"] = row.body
    approvals = [r for r in view["reviews"] if r["verdict"] == "approve"]
    required = row.decision.reviewers_required if row.decision else 0
    view["approvals_needed"] = max(0, required - len(approvals)) if row.state == "in_review" else 0
    view["match"] = {"status": match.status, "score": match.score} if match else None
    view["disclosure"] = (
        {"fields": disclosure.fields, "new_information": disclosure.new_information}
        if disclosure else None
    )
    return view
