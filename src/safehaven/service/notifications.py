"""Telling people: disclosure notices, exemptions that are due for review, the outbox.

R (W) v SSH [2015] EWCA Civ 1034 held that failing to alert a person whose non-clinical
details were passed on breaches Art 8; so notice is the default after every disclosure, and
the only way round it is an exemption the agreement allows, recorded by a reviewer with a
reason and a date by which someone must look at it again.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from jinja2 import Environment, StrictUndefined
from sqlalchemy import select
from sqlalchemy.orm import Session

from safehaven.domain.agreement import Agreement
from safehaven.domain.decision import AgreementSet
from safehaven.domain.purposes import PURPOSES
from safehaven.service import requests as svc
from safehaven.service.clock import as_utc
from safehaven.store.accounts import OutboxRow
from safehaven.store.models import DisclosureRow, MatchRow, NotificationRow, RequestRow

FIELD_LABELS = {
    "nhs_number": "your NHS number",
    "family": "your family name",
    "given": "your given name",
    "gender": "your gender",
    "birthdate": "your date of birth",
    "address": "your address",
    "address-postalcode": "your postcode",
    "telecom": "your phone number or email address",
    "gp_practice": "your GP practice",
    "registration_date": "the date you registered",
    "school": "your school",
    "entitlement": "whether you are entitled to the service you applied for",
}

_env = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)  # noqa: S701 - plain-text letters, never HTML
NOTICE_TEMPLATE = _env.from_string(
    """\
Notice of a disclosure of your information

On {{ requested_on }}, {{ requester }} asked {{ controller }} for information about you.

Why they asked: {{ purpose }}
The agreement it was given under: "{{ agreement_title }}" ({{ agreement_id }}, version \
{{ agreement_version }})

What was given to them on {{ disclosed_on }}:
{% for label in fields %}  - {{ label }}
{% else %}  - nothing
{% endfor %}{% if delayed_because %}
We did not tell you at the time because {{ delayed_because }}  That reason no
longer applies, so we are telling you now.
{% endif %}
You can see every request made about you, who made it and what was given, in the
safehaven portal (reference {{ reference }}).  You can ask {{ controller }} why this
happened and complain to the Information Commissioner's Office.
"""
)


def render_notice(
    row: RequestRow, agreement: Agreement, released: dict[str, Any], *, at: datetime,
    delayed_because: str | None = None,
) -> str:
    requester = next(
        (p.name for p in agreement.parties.requesters if p.id == row.requester), row.requester
    )
    purpose = PURPOSES.get(row.purpose)
    return NOTICE_TEMPLATE.render(
        requested_on=row.made_on.isoformat(),
        requester=requester,
        controller=agreement.parties.controller.name,
        purpose=purpose.description if purpose else row.purpose,
        agreement_title=agreement.title,
        agreement_id=agreement.id,
        agreement_version=agreement.version,
        disclosed_on=as_utc(at).date().isoformat(),
        fields=[FIELD_LABELS.get(f, f) for f in sorted(released)],
        reference=row.public_id,
        delayed_because=delayed_because,
    )


def notify_disclosure(
    session: Session,
    row: RequestRow,
    agreement: Agreement,
    released: dict[str, Any],
    *,
    recipient: str,
    at: datetime,
) -> str:
    """Record the notification transition and queue the letter in the same transaction."""
    state = svc.notify(session, row.public_id, actor=svc.ENGINE_ACTOR, at=at)
    session.add(
        OutboxRow(
            request_id=row.id,
            kind="disclosure_notice",
            channel="letter",
            recipient=recipient,
            body=render_notice(row, agreement, released, at=at),
            created_at=at,
            sent_at=None,
        )
    )
    session.flush()
    return state


ExemptionAction = Literal["renew", "lift"]


def review_exemption(
    session: Session,
    public_id: str,
    agreements: AgreementSet,
    *,
    action: ExemptionAction,
    reason: str,
    review_on: date | None,
    actor: str,
    at: datetime,
) -> dict[str, Any]:
    """A reviewer's decision on an exemption from notice: keep it longer, or lift it.

    Lifting queues the disclosure notice at once, dated with the day of the disclosure and
    saying why it comes late (the exemption's own description from the agreement), to the
    register record the request matched, exactly as a timely notice would have gone.
    """
    row = svc.get_request(session, public_id)
    agreement = agreements.get(row.agreement_id)
    if agreement is None:
        raise svc.NotificationError(f"agreement: {row.agreement_id!r} is not loaded")
    if action == "renew":
        if review_on is None:
            raise svc.NotificationError("review_on: required to renew an exemption")
        until = svc.renew_exemption(session, public_id, agreement, reason=reason,
                                    review_on=review_on, actor=actor, at=at)
        return {"id": public_id, "state": row.state, "review_on": until.isoformat()}
    if review_on is not None:
        raise svc.NotificationError("review_on: only with action 'renew'")
    notice = svc.lift_exemption(session, public_id, reason=reason, actor=actor, at=at)
    disclosure = session.execute(
        select(DisclosureRow).where(DisclosureRow.request_id == row.id)
    ).scalar_one()
    match = session.execute(select(MatchRow).where(MatchRow.request_id == row.id)).scalar_one()
    exemption = next((e for e in agreement.notification.exemptions
                      if e.id == notice.exemption_id), None)
    because = (exemption.description.rstrip(".") + "." if exemption
               else f"of an exemption from notice ({notice.exemption_id}).")
    session.add(
        OutboxRow(
            request_id=row.id,
            kind="disclosure_notice",
            channel="letter",
            recipient=match.record_id or "",
            body=render_notice(row, agreement, dict(disclosure.fields),
                               at=disclosure.disclosed_at, delayed_because=because),
            created_at=at,
            sent_at=None,
        )
    )
    session.flush()
    return {"id": public_id, "state": row.state, "review_on": None}


def disclosure_of(session: Session, request_row_id: int) -> dict[str, Any] | None:
    row = session.execute(
        select(DisclosureRow).where(DisclosureRow.request_id == request_row_id)
    ).scalar_one_or_none()
    return None if row is None else dict(row.fields)


def overdue_exemptions(session: Session, today: date) -> list[dict[str, Any]]:
    """Exemptions whose review date has passed: someone must decide whether to tell now."""
    rows = session.execute(
        select(NotificationRow, RequestRow)
        .join(RequestRow, RequestRow.id == NotificationRow.request_id)
        .where(NotificationRow.kind == "exempted", NotificationRow.review_on < today)
        .order_by(NotificationRow.review_on, NotificationRow.id)
    ).all()
    return [
        {
            "id": req.public_id,
            "requester": req.requester,
            "agreement": req.agreement_id,
            "exemption_id": n.exemption_id,
            "reason": n.reason,
            "review_on": n.review_on.isoformat() if n.review_on else None,
            "recorded_by": n.recorded_by,
            "days_overdue": (today - n.review_on).days if n.review_on else None,
        }
        for n, req in rows
    ]


def outbox(session: Session, *, kind: str | None = None, limit: int = 100) -> list[OutboxRow]:
    query = select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)
    if kind:
        query = query.where(OutboxRow.kind == kind)
    return list(session.execute(query).scalars())
