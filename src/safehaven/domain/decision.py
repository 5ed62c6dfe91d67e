"""The decision engine: a pure function from a request to an explained outcome.

Deterministic by construction (no clock, no I/O: the date received and the volume already
used are inputs), so a decision can be replayed years later from the ledger and must come
out the same.  Every rule that can be evaluated is evaluated and explained, even after one
has failed: a reviewer, a requester and an auditor all need the full picture, not the
first objection.

Where each rule lives is listed in ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from safehaven.domain.agreement import Agreement
from safehaven.domain.fields import CLINICAL_FIELDS
from safehaven.domain.firewall import DEFAULT_POLICY, FirewallPolicy
from safehaven.domain.purposes import PURPOSES
from safehaven.domain.request import TracingRequest


class Outcome(StrEnum):
    REFUSED = "refused"
    NEEDS_REVIEW = "needs_review"
    APPROVED = "approved"


class RuleId(StrEnum):
    """Every rule the engine can apply.  Each refusing rule has its own id."""

    REQUEST_DATES = "request.dates"
    REQUESTER_KNOWN = "requester.known"
    AGREEMENT_KNOWN = "agreement.known"
    AGREEMENT_IN_FORCE = "agreement.in_force"
    REQUESTER_PARTY = "requester.party"
    PURPOSE_PERMITTED = "purpose.permitted"
    LEGAL_BASIS = "purpose.legal_basis"
    FIREWALL = "firewall"
    SUBJECT_IDENTIFIABLE = "subject.identifiable"
    GROUNDS_REQUIRED = "grounds.required"
    OFFENCE_AGE = "grounds.offence_age"
    FIELDS_FORBIDDEN = "fields.forbidden"
    FIELDS_PERMITTED = "fields.permitted"
    VOLUME_CAP = "volume.cap"
    REVIEW = "review.required"


@dataclass(frozen=True, slots=True)
class RuleResult:
    id: str
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "passed": self.passed, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class AgreementRef:
    id: str
    version: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    rules: tuple[RuleResult, ...]
    agreement: AgreementRef | None
    firewall_on: bool
    reviewers_required: int = 0
    permitted_fields: tuple[str, ...] = ()
    cap_month: str | None = None

    @property
    def failed(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if not r.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "rules": [r.to_dict() for r in self.rules],
            "refused_by": [r.id for r in self.rules if not r.passed],
            "agreement": self.agreement.to_dict() if self.agreement else None,
            "firewall": "on" if self.firewall_on else "off",
            "reviewers_required": self.reviewers_required,
            "permitted_fields": list(self.permitted_fields),
        }


@dataclass(frozen=True)
class AgreementSet:
    """The agreements a controller has loaded, with the agencies they name."""

    agreements: Mapping[str, Agreement]
    extra_agencies: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        agencies = set(self.extra_agencies)
        for a in self.agreements.values():
            agencies |= a.requester_ids
        object.__setattr__(self, "_agencies", frozenset(agencies))

    @classmethod
    def of(cls, agreements: Iterable[Agreement]) -> AgreementSet:
        return cls({a.id: a for a in agreements})

    @property
    def agencies(self) -> frozenset[str]:
        return self._agencies  # type: ignore[attr-defined,no-any-return]

    def get(self, agreement_id: str) -> Agreement | None:
        return self.agreements.get(agreement_id)


def _years_between(earlier: date, later: date) -> int:
    """Whole years from ``earlier`` to ``later`` (birthday arithmetic, 29 Feb safe)."""
    years = later.year - earlier.year
    if (later.month, later.day) < (earlier.month, earlier.day):
        years -= 1
    return years


def decide(
    request: TracingRequest,
    agreements: AgreementSet,
    *,
    received_on: date,
    firewall_on: bool = True,
    firewall: FirewallPolicy = DEFAULT_POLICY,
    cap_usage: int = 0,
) -> Decision:
    """Decide a request.

    ``received_on`` is the date safehaven received it (caps count by month received, so a
    requester cannot escape a full month by back-dating); the agreement status applied is
    the one in force on ``request.made_on``.  ``cap_usage`` is how many requests under
    ``request.agreement`` already count against its cap in the month of ``received_on``.
    """
    rules: list[RuleResult] = []
    add = rules.append
    made_on = request.made_on

    if made_on <= received_on:
        add(
            RuleResult(
                RuleId.REQUEST_DATES,
                True,
                f"Made on {made_on.isoformat()}, received on {received_on.isoformat()}.",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.REQUEST_DATES,
                False,
                f"The request says it was made on {made_on.isoformat()}, after it was "
                f"received ({received_on.isoformat()}); a request cannot be post-dated.",
            )
        )

    if request.requester in agreements.agencies:
        add(
            RuleResult(
                RuleId.REQUESTER_KNOWN,
                True,
                f"{request.requester!r} is a registered requesting agency.",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.REQUESTER_KNOWN,
                False,
                f"{request.requester!r} is not a requesting agency known to this controller.",
            )
        )

    agreement = agreements.get(request.agreement)
    if agreement is None:
        add(
            RuleResult(
                RuleId.AGREEMENT_KNOWN,
                False,
                f"No agreement with id {request.agreement!r} is loaded.",
            )
        )
        return _finish(rules, None, firewall_on, 0, (), None)
    ref = AgreementRef(agreement.id, agreement.version, agreement.sha256)
    add(
        RuleResult(
            RuleId.AGREEMENT_KNOWN,
            True,
            f"Agreement {agreement.id!r} version {agreement.version} ({agreement.title}).",
        )
    )

    status = agreement.status_on(made_on)
    purposes_now = agreement.purposes_on(made_on)
    if status is None:
        first = agreement.status_history[0].date.isoformat()
        add(
            RuleResult(
                RuleId.AGREEMENT_IN_FORCE,
                False,
                f"On {made_on.isoformat()} the agreement did not exist yet (its history "
                f"starts {first}).",
            )
        )
    elif not purposes_now:
        add(
            RuleResult(
                RuleId.AGREEMENT_IN_FORCE,
                False,
                f"On {made_on.isoformat()} the agreement was {status.status.value} "
                f"(since {status.date.isoformat()}: {status.note}).",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.AGREEMENT_IN_FORCE,
                True,
                f"On {made_on.isoformat()} the agreement was {status.status.value} "
                f"(since {status.date.isoformat()}).",
            )
        )

    if request.requester in agreement.requester_ids:
        add(
            RuleResult(
                RuleId.REQUESTER_PARTY,
                True,
                f"{request.requester!r} is a requesting party to the agreement.",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.REQUESTER_PARTY,
                False,
                f"{request.requester!r} is not a party to agreement {agreement.id!r}; "
                f"its requesters are {sorted(agreement.requester_ids)}.",
            )
        )

    terms = agreement.purpose_terms(request.purpose)
    if terms is None:
        add(
            RuleResult(
                RuleId.PURPOSE_PERMITTED,
                False,
                f"Purpose {request.purpose!r} is not a purpose of this agreement.",
            )
        )
        return _finish(rules, ref, firewall_on, 0, (), None)
    if request.purpose in purposes_now:
        add(
            RuleResult(
                RuleId.PURPOSE_PERMITTED,
                True,
                f"Purpose {request.purpose!r} was permitted on {made_on.isoformat()}.",
            )
        )
    elif status is not None and purposes_now:
        add(
            RuleResult(
                RuleId.PURPOSE_PERMITTED,
                False,
                f"Purpose {request.purpose!r} was no longer permitted on "
                f"{made_on.isoformat()}: since {status.date.isoformat()} the agreement is "
                f"narrowed to {sorted(purposes_now)} ({status.note}).",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.PURPOSE_PERMITTED,
                False,
                f"Purpose {request.purpose!r} was not permitted on {made_on.isoformat()} "
                "because the agreement was not in force.",
            )
        )

    bases = [b for b in agreement.legal_bases if b.id in terms.legal_bases]
    live = [b for b in bases if b.in_force_on(made_on)]
    if live:
        add(
            RuleResult(
                RuleId.LEGAL_BASIS,
                True,
                "Legal basis: " + "; ".join(b.citation for b in live) + ".",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.LEGAL_BASIS,
                False,
                f"None of the purpose's legal bases was in force on {made_on.isoformat()}: "
                + "; ".join(b.citation for b in bases)
                + ".",
            )
        )

    category = PURPOSES[request.purpose].category
    if not firewall_on:
        add(
            RuleResult(
                RuleId.FIREWALL,
                True,
                "The firewall is switched off by the controller; no firewall rule applied.",
            )
        )
    else:
        blocking = [r for r in firewall.rules if r.blocks(agreement.register_kind, category)]
        if blocking:
            for r in blocking:
                add(
                    RuleResult(
                        f"{RuleId.FIREWALL}.{r.id}",
                        False,
                        f"Firewall: {r.description} (register: {agreement.register_kind.value}"
                        f"; purpose category: {category.value}).",
                    )
                )
        else:
            add(
                RuleResult(
                    RuleId.FIREWALL,
                    True,
                    f"No firewall rule covers a {agreement.register_kind.value} register for a "
                    f"{category.value} purpose.",
                )
            )

    subject = request.subject
    if subject.nhs_number or (subject.birthdate and subject.family):
        add(
            RuleResult(
                RuleId.SUBJECT_IDENTIFIABLE,
                True,
                "The subject is described well enough to match (NHS number, or family "
                "name with date of birth).",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.SUBJECT_IDENTIFIABLE,
                False,
                "The subject needs an NHS number, or a family name with a date of birth, "
                "before a match could be trusted.",
            )
        )

    grounds = request.grounds
    missing = [g.value for g in terms.required_grounds if not grounds.has(g.value)]
    if missing:
        add(
            RuleResult(
                RuleId.GROUNDS_REQUIRED,
                False,
                f"Purpose {request.purpose!r} requires grounds that were not stated: "
                f"{', '.join(missing)}.",
            )
        )
    else:
        stated = ", ".join(g.value for g in terms.required_grounds) or "none"
        add(RuleResult(RuleId.GROUNDS_REQUIRED, True, f"Required grounds stated: {stated}."))

    if terms.offence_max_age_years is not None:
        limit = terms.offence_max_age_years
        if grounds.offence_date is None:
            add(
                RuleResult(
                    RuleId.OFFENCE_AGE,
                    False,
                    f"The offence date is needed to check the {limit}-year limit.",
                )
            )
        elif grounds.offence_date > made_on:
            add(
                RuleResult(
                    RuleId.OFFENCE_AGE,
                    False,
                    "The offence date is after the date the request was made.",
                )
            )
        else:
            age = _years_between(grounds.offence_date, made_on)
            if age < limit:
                add(
                    RuleResult(
                        RuleId.OFFENCE_AGE,
                        True,
                        f"The offence ({grounds.offence_date.isoformat()}) is within the "
                        f"{limit}-year limit.",
                    )
                )
            else:
                add(
                    RuleResult(
                        RuleId.OFFENCE_AGE,
                        False,
                        f"The offence ({grounds.offence_date.isoformat()}) is {age} years "
                        f"old; requests are refused once it is {limit} years old.",
                    )
                )

    asked = request.fields
    forbidden = [f for f in asked if f in CLINICAL_FIELDS or f in agreement.fields.forbidden]
    if forbidden:
        add(
            RuleResult(
                RuleId.FIELDS_FORBIDDEN,
                False,
                f"Forbidden field(s) asked for: {', '.join(forbidden)} (clinical data "
                "never leaves, and the agreement forbids these).",
            )
        )
    else:
        add(RuleResult(RuleId.FIELDS_FORBIDDEN, True, "No forbidden or clinical field asked for."))

    permitted = agreement.permitted_fields(request.purpose)
    outside = [f for f in asked if f not in permitted and f not in forbidden]
    if outside:
        add(
            RuleResult(
                RuleId.FIELDS_PERMITTED,
                False,
                f"Field(s) outside what the agreement permits for {request.purpose!r}: "
                f"{', '.join(outside)}; permitted: {', '.join(sorted(permitted))}.",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.FIELDS_PERMITTED,
                True,
                f"All fields asked for are permitted: {', '.join(asked)}.",
            )
        )

    cap_month: str | None = None
    if agreement.volume_cap is not None:
        cap = agreement.volume_cap.per_month
        cap_month = received_on.strftime("%Y-%m")
        if cap_usage < cap:
            add(
                RuleResult(
                    RuleId.VOLUME_CAP,
                    True,
                    f"This is request {cap_usage + 1} of at most {cap} in {cap_month}.",
                )
            )
        else:
            add(
                RuleResult(
                    RuleId.VOLUME_CAP,
                    False,
                    f"The monthly cap of {cap} requests for {cap_month} has been reached "
                    f"({cap_usage} already counted).",
                )
            )

    reviewers = terms.review.reviewers
    if reviewers:
        who = "two different reviewers" if reviewers == 2 else "a reviewer"
        add(
            RuleResult(
                RuleId.REVIEW,
                True,
                f"The agreement requires {who} to approve {request.purpose!r} requests.",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.REVIEW,
                True,
                f"The agreement allows {request.purpose!r} requests without review.",
            )
        )

    fields_out = tuple(f for f in asked if f in permitted)
    return _finish(rules, ref, firewall_on, reviewers, fields_out, cap_month)


def _finish(
    rules: list[RuleResult],
    ref: AgreementRef | None,
    firewall_on: bool,
    reviewers: int,
    fields_out: tuple[str, ...],
    cap_month: str | None,
) -> Decision:
    if any(not r.passed for r in rules):
        outcome = Outcome.REFUSED
        fields_out = ()
    elif reviewers:
        outcome = Outcome.NEEDS_REVIEW
    else:
        outcome = Outcome.APPROVED
    return Decision(outcome, tuple(rules), ref, firewall_on, reviewers, fields_out, cap_month)
