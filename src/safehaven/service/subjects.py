"""The data subject's view: prove who you are, then see every request about you.

Identity is an NHS number and a birth date (both known to many people) plus a one-time
code sent through the notification channel, i.e. to the address the register holds, so
knowing someone's details is not enough to read their file.  Issuing a code never says
whether the person is known: the answer is the same for everyone.

Requests still in progress, and requests whose notice is withheld under a recorded
exemption, are not shown: the portal must not tip off the subject of a live police
investigation that the agreement lets the controller keep quiet about.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from safehaven.domain.decision import AgreementSet
from safehaven.domain.lifecycle import State
from safehaven.domain.purposes import PURPOSES
from safehaven.service.accounts import digest
from safehaven.service.clock import as_utc
from safehaven.store.accounts import OutboxRow, RequestSubjectRow, SubjectCodeRow
from safehaven.store.models import DecisionRow, DisclosureRow, RequestRow

CODE_TTL = timedelta(minutes=15)
MAX_ATTEMPTS = 5
MAX_LIVE_CODES = 3
VISIBLE_STATES = frozenset({State.REFUSED.value, State.NO_MATCH.value, State.NOTIFIED.value})


class TooManyCodesError(RuntimeError):
    pass


def link(session: Session, request_row_id: int, nhs_number: str, *, source: str) -> None:
    exists = session.execute(
        select(RequestSubjectRow.id).where(
            RequestSubjectRow.request_id == request_row_id,
            RequestSubjectRow.nhs_number == nhs_number,
        )
    ).first()
    if exists is None:
        session.add(
            RequestSubjectRow(request_id=request_row_id, nhs_number=nhs_number, source=source)
        )


_LINK = insert(RequestSubjectRow)


def link_new(session: Session, request_row_id: int, nhs_number: str, *, source: str) -> None:
    """:func:`link` for a request created in this unit, which has no links yet: one Core
    INSERT and no lookup (every submit that names an NHS number comes here)."""
    session.connection().execute(
        _LINK, {"request_id": request_row_id, "nhs_number": nhs_number, "source": source})


def issue_code(session: Session, nhs_number: str, birthdate: date, *, at: datetime) -> str:
    """Create a code and queue it to the person; the caller decides whether to print it."""
    live = session.execute(
        select(func.count()).select_from(SubjectCodeRow).where(
            SubjectCodeRow.nhs_number == nhs_number,
            SubjectCodeRow.used_at.is_(None),
            SubjectCodeRow.expires_at > at,
        )
    ).scalar_one()
    if live >= MAX_LIVE_CODES:
        raise TooManyCodesError(
            f"nhs_number: {MAX_LIVE_CODES} codes are already waiting; use one or wait "
            f"{int(CODE_TTL.total_seconds() // 60)} minutes"
        )
    code = f"{secrets.randbelow(10**6):06d}"
    session.add(
        SubjectCodeRow(
            nhs_number=nhs_number, birthdate=birthdate, code_sha256=digest(code), attempts=0,
            created_at=at, expires_at=at + CODE_TTL, used_at=None,
        )
    )
    session.add(
        OutboxRow(
            request_id=None, kind="access_code", channel="letter", recipient=nhs_number,
            body=f"Your safehaven access code is {code}. It works once, for 15 minutes.",
            created_at=at, sent_at=None,
        )
    )
    session.flush()
    return code


def verify_code(
    session: Session, nhs_number: str, birthdate: date, code: str, *, at: datetime
) -> bool:
    """Spend one attempt on the newest live code; a code works once."""
    row = session.execute(
        select(SubjectCodeRow)
        .where(
            SubjectCodeRow.nhs_number == nhs_number,
            SubjectCodeRow.used_at.is_(None),
            SubjectCodeRow.expires_at > at,
        )
        .order_by(SubjectCodeRow.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if row is None or row.attempts >= MAX_ATTEMPTS:
        return False
    row.attempts += 1
    if row.birthdate != birthdate or not hmac.compare_digest(row.code_sha256, digest(code)):
        return False
    row.used_at = at
    return True


def requests_about(
    session: Session, nhs_number: str, agreements: AgreementSet
) -> list[dict[str, Any]]:
    rows = session.execute(
        select(RequestRow, DecisionRow, DisclosureRow)
        .join(RequestSubjectRow, RequestSubjectRow.request_id == RequestRow.id)
        .join(DecisionRow, DecisionRow.request_id == RequestRow.id, isouter=True)
        .join(DisclosureRow, DisclosureRow.request_id == RequestRow.id, isouter=True)
        .where(RequestSubjectRow.nhs_number == nhs_number,
               RequestRow.state.in_(VISIBLE_STATES))
        .order_by(RequestRow.received_at, RequestRow.id)
    ).all()
    out: list[dict[str, Any]] = []
    for req, decision, disclosure in rows:
        agreement = agreements.get(req.agreement_id)
        who = req.requester
        if agreement is not None:
            who = next((p.name for p in agreement.parties.requesters if p.id == req.requester),
                       req.requester)
        purpose = PURPOSES.get(req.purpose)
        out.append({
            "id": req.public_id,
            "requester": {"id": req.requester, "name": who},
            "agreement": {"id": req.agreement_id,
                          "title": agreement.title if agreement else None},
            "purpose": {"id": req.purpose,
                        "description": purpose.description if purpose else None},
            "made_on": req.made_on.isoformat(),
            "received_at": as_utc(req.received_at).isoformat(),
            "outcome": req.state,
            "refused_by": [r["id"] for r in decision.rules if not r["passed"]]
            if decision else [],
            "fields_given": dict(disclosure.fields) if disclosure else {},
            "disclosed_at": as_utc(disclosure.disclosed_at).isoformat() if disclosure else None,
        })
    return out
