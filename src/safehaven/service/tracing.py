"""After approval: match against the register, disclose the permitted fields, tell the person.

The matcher is reached through :class:`Matcher`, a seam with one method, so the service does
not care whether the register is a Splink-trained index over ten million rows or four
records in a test.  A matcher answers in the request's own field vocabulary (``address``,
``address-postalcode``, ``entitlement`` ...): minimisation then only has to pick the
decision's permitted fields, and nothing that is not a request field can ever be released.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from safehaven.domain.decision import AgreementSet
from safehaven.domain.lifecycle import State
from safehaven.domain.request import Subject, parse_request_obj
from safehaven.service import notifications, subjects
from safehaven.service import requests as svc

ENTITLEMENT_ANSWERS = frozenset({"entitled", "not_entitled"})


@dataclass(frozen=True)
class Found:
    """A matcher's verdict; ``record`` is empty unless ``status`` is ``matched``."""

    status: svc.MatchStatus
    score: float | None
    record_id: str | None = None
    record: Mapping[str, str] = field(default_factory=dict)


class Matcher(Protocol):
    def match(self, subject: Subject) -> Found: ...


class NoRegister:
    """The matcher when no register is loaded: nobody can be found, so nothing is disclosed."""

    def match(self, subject: Subject) -> Found:
        return Found("no_match", None)


def _norm(value: object) -> str:
    return " ".join(str(value).casefold().split())


class InMemoryRegister:
    """Deterministic matching over a small list of records (tests, the demo, status checks).

    An NHS number, when given, must agree; otherwise family name and birth date must agree
    (and the given name, when both sides have one).  More than one candidate is
    ambiguous, which discloses nothing: the PDS rule.
    """

    def __init__(self, records: Iterable[Mapping[str, str]]) -> None:
        self.records = [dict(r) for r in records]
        for i, r in enumerate(self.records):
            if "record_id" not in r:
                raise ValueError(f"records.{i}.record_id: required")

    def match(self, subject: Subject) -> Found:
        def fits(r: Mapping[str, str]) -> bool:
            if subject.nhs_number is not None:
                return r.get("nhs_number") == subject.nhs_number
            if subject.birthdate is None or r.get("birthdate") != subject.birthdate.isoformat():
                return False
            if _norm(r.get("family", "")) != _norm(subject.family):
                return False
            given = r.get("given")
            return subject.given is None or given is None or _norm(given) == _norm(subject.given)

        hits = [r for r in self.records if fits(r)]
        if not hits:
            return Found("no_match", 0.0)
        if len(hits) > 1:
            return Found("ambiguous", 0.5)
        record = hits[0]
        fields = {k: str(v) for k, v in record.items() if k != "record_id" and v is not None}
        return Found("matched", 1.0, str(record["record_id"]), fields)


@dataclass(frozen=True)
class ExemptionChoice:
    exemption_id: str
    reason: str
    review_on: date


def complete(
    session: Session,
    public_id: str,
    *,
    agreements: AgreementSet,
    matcher: Matcher,
    at: datetime,
    actor: str,
    exemption: ExemptionChoice | None = None,
) -> str:
    """Take an approved request as far as it can go in this transaction; return its state.

    A request that is not approved is left alone (refused, or waiting for a second
    reviewer).  ``exemption`` is the reviewer's recorded reason not to tell the person; it
    is checked against the agreement by :func:`safehaven.service.requests.exempt`, and any
    problem raises, rolling back the whole step including the approval that led here.
    """
    row = svc.get_request(session, public_id)
    if row.state != State.APPROVED.value:
        if exemption is not None:
            raise svc.NotificationError(
                "exemption: can only be recorded with the approval that completes the review"
            )
        return row.state
    request = parse_request_obj(row.body)
    found = matcher.match(request.subject)
    state = svc.record_match(
        session, public_id, status=found.status, score=found.score,
        record_id=found.record_id, at=at,
    )
    if found.status != "matched":
        return state
    nhs = found.record.get("nhs_number")
    if nhs:
        subjects.link(session, row.id, nhs, source="match")
    assert row.decision is not None
    permitted = list(row.decision.permitted_fields)
    released: dict[str, Any] = {f: found.record[f] for f in permitted if f in found.record}
    if "entitlement" in released and released["entitlement"] not in ENTITLEMENT_ANSWERS:
        del released["entitlement"]
    svc.disclose(session, public_id, released=released, at=at)
    agreement = agreements.get(row.agreement_id)
    if agreement is None:  # decided under it moments ago; only a config change gets here
        raise svc.NotificationError(f"agreement: {row.agreement_id!r} is no longer loaded")
    if exemption is not None:
        return svc.exempt(
            session, public_id, agreement, exemption_id=exemption.exemption_id,
            reason=exemption.reason, review_on=exemption.review_on, actor=actor, at=at,
        )
    return notifications.notify_disclosure(
        session, row, agreement, released, recipient=found.record_id or "", at=at
    )


def status_answer(session: Session, public_id: str) -> str:
    """``entitled`` / ``not_entitled`` when the register said so, otherwise ``unknown``."""
    row = svc.get_request(session, public_id)
    disclosure = notifications.disclosure_of(session, row.id)
    if disclosure is not None:
        value = disclosure.get("entitlement")
        if value in ENTITLEMENT_ANSWERS:
            return str(value)
    return "unknown"
