"""The decision engine: a pure function from a request to an explained outcome.

Deterministic by construction (no clock, no I/O: the date received and the volume already
used are inputs), so a decision can be replayed years later from the ledger and must come
out the same.  Every rule that can be evaluated is evaluated and explained, even after one
has failed: a reviewer, a requester and an auditor all need the full picture, not the
first objection.

Where each rule lives is listed in ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, NamedTuple

from safehaven.domain.agreement import (
    AGGREGATE_DIMENSIONS,
    POINT_LOCATIONS,
    Agreement,
    PurposeTerms,
)
from safehaven.domain.collection import RegisterProfile
from safehaven.domain.fields import CLINICAL_FIELDS
from safehaven.domain.firewall import DEFAULT_POLICY, FirewallPolicy
from safehaven.domain.purposes import PURPOSES
from safehaven.domain.request import AggregateRequest, TracingRequest


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
    PURPOSE_LIMITATION = "purpose.limitation"
    AGGREGATE_PERMITTED = "aggregate.permitted"
    AGGREGATE_DIMENSIONS = "aggregate.dimensions"
    SUBJECT_IDENTIFIABLE = "subject.identifiable"
    GROUNDS_REQUIRED = "grounds.required"
    OFFENCE_AGE = "grounds.offence_age"
    FIELDS_FORBIDDEN = "fields.forbidden"
    FIELDS_PERMITTED = "fields.permitted"
    VOLUME_CAP = "volume.cap"
    REVIEW = "review.required"


class RuleResult(NamedTuple):
    """A NamedTuple, not a frozen dataclass: as immutable, and half the cost to build (a
    frozen dataclass's ``__init__`` goes through ``object.__setattr__``) at ~15 a decision."""

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
            "cap_month": self.cap_month,
        }


@dataclass(frozen=True)
class AgreementSet:
    """The agreements a controller has loaded, with the agencies they name."""

    agreements: Mapping[str, Agreement]
    extra_agencies: frozenset[str] = field(default_factory=frozenset)
    #: Register profiles (purpose of collection per field), keyed by controller id.
    profiles: Mapping[str, RegisterProfile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        agencies = set(self.extra_agencies)
        for a in self.agreements.values():
            agencies |= a.requester_ids
        object.__setattr__(self, "_agencies", frozenset(agencies))

    @classmethod
    def of(
        cls, agreements: Iterable[Agreement], profiles: Iterable[RegisterProfile] = ()
    ) -> AgreementSet:
        return cls({a.id: a for a in agreements}, profiles={p.controller: p for p in profiles})

    def profile_for(self, agreement: Agreement) -> RegisterProfile | None:
        return self.profiles.get(agreement.parties.controller.id)

    @property
    def agencies(self) -> frozenset[str]:
        return self._agencies  # type: ignore[attr-defined,no-any-return]

    def get(self, agreement_id: str) -> Agreement | None:
        return self.agreements.get(agreement_id)


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _years_between(earlier: date, later: date) -> int:
    """Whole years from ``earlier`` to ``later`` (birthday arithmetic, 29 Feb safe)."""
    years = later.year - earlier.year
    if (later.month, later.day) < (earlier.month, earlier.day):
        years -= 1
    return years


def _common_rules(
    add: Callable[[RuleResult], None],
    *,
    requester: str,
    agreement_id: str,
    purpose_id: str,
    made_on: date,
    received_on: date,
    agreements: AgreementSet,
    firewall_on: bool,
    firewall: FirewallPolicy,
) -> tuple[Agreement | None, PurposeTerms | None]:
    """Dates, requester, agreement, status, party, purpose, legal basis and firewall.

    Returns ``(None, None)`` when later rules cannot be evaluated (unknown agreement, or a
    purpose the agreement does not have).
    """
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

    if requester in agreements.agencies:
        add(
            RuleResult(
                RuleId.REQUESTER_KNOWN, True, f"{requester!r} is a registered requesting agency."
            )
        )
    else:
        add(
            RuleResult(
                RuleId.REQUESTER_KNOWN,
                False,
                f"{requester!r} is not a requesting agency known to this controller.",
            )
        )

    agreement = agreements.get(agreement_id)
    if agreement is None:
        add(
            RuleResult(
                RuleId.AGREEMENT_KNOWN, False, f"No agreement with id {agreement_id!r} is loaded."
            )
        )
        return None, None
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

    if requester in agreement.requester_ids:
        add(
            RuleResult(
                RuleId.REQUESTER_PARTY,
                True,
                f"{requester!r} is a requesting party to the agreement.",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.REQUESTER_PARTY,
                False,
                f"{requester!r} is not a party to agreement {agreement.id!r}; "
                f"its requesters are {sorted(agreement.requester_ids)}.",
            )
        )

    terms = agreement.purpose_terms(purpose_id)
    if terms is None:
        add(
            RuleResult(
                RuleId.PURPOSE_PERMITTED,
                False,
                f"Purpose {purpose_id!r} is not a purpose of this agreement.",
            )
        )
        return agreement, None
    if purpose_id in purposes_now:
        add(
            RuleResult(
                RuleId.PURPOSE_PERMITTED,
                True,
                f"Purpose {purpose_id!r} was permitted on {made_on.isoformat()}.",
            )
        )
    elif status is not None and purposes_now:
        add(
            RuleResult(
                RuleId.PURPOSE_PERMITTED,
                False,
                f"Purpose {purpose_id!r} was no longer permitted on "
                f"{made_on.isoformat()}: since {status.date.isoformat()} the agreement is "
                f"narrowed to {sorted(purposes_now)} ({status.note}).",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.PURPOSE_PERMITTED,
                False,
                f"Purpose {purpose_id!r} was not permitted on {made_on.isoformat()} "
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

    purpose = PURPOSES[purpose_id]
    if not firewall_on:
        add(
            RuleResult(
                RuleId.FIREWALL,
                True,
                "The firewall is switched off by the controller; no firewall rule applied.",
            )
        )
    else:
        blocking = [r for r in firewall.rules if r.blocks(agreement.register_kind, purpose)]
        if blocking:
            for r in blocking:
                add(
                    RuleResult(
                        f"{RuleId.FIREWALL}.{r.id}",
                        False,
                        f"Firewall: {r.description.rstrip('.')} (register: "
                        f"{agreement.register_kind.value}; purpose: {purpose.id}, "
                        f"{purpose.category.value}).",
                    )
                )
        else:
            add(
                RuleResult(
                    RuleId.FIREWALL,
                    True,
                    f"No firewall rule covers {_a(agreement.register_kind.value)} register "
                    f"for {_a(purpose.category.value)} purpose.",
                )
            )
    return agreement, terms


def _begin(
    add: Callable[[RuleResult], None],
    request: TracingRequest | AggregateRequest,
    received_on: date,
    agreements: AgreementSet,
    firewall_on: bool,
    firewall: FirewallPolicy,
) -> tuple[Agreement | None, PurposeTerms | None, AgreementRef | None]:
    """The shared rules for any kind of request, plus the reference every decision names."""
    agreement, terms = _common_rules(
        add,
        requester=request.requester,
        agreement_id=request.agreement,
        purpose_id=request.purpose,
        made_on=request.made_on,
        received_on=received_on,
        agreements=agreements,
        firewall_on=firewall_on,
        firewall=firewall,
    )
    ref = AgreementRef(agreement.id, agreement.version, agreement.sha256) if agreement else None
    return agreement, terms, ref


def _purpose_limitation(
    add: Callable[[RuleResult], None],
    agreement: Agreement,
    profile: RegisterProfile | None,
    purpose_id: str,
    fields: Iterable[str],
) -> None:
    """Each field may serve only a use the agreement declares compatible with why it was
    collected; a field whose collection purpose the register does not record cannot."""
    if profile is None:
        add(
            RuleResult(
                RuleId.PURPOSE_LIMITATION,
                False,
                f"The controller {agreement.parties.controller.id!r} has no register "
                "profile saying why its fields were collected, so purpose limitation "
                "cannot be shown.",
            )
        )
        return
    compatible = agreement.compatible_collection_purposes(purpose_id)
    problems = []
    for f in fields:
        collected = profile.collected_for(f)
        if collected is None:
            problems.append(f"{f} (the register does not record why it was collected)")
        elif not compatible.intersection(collected):
            problems.append(f"{f} (collected for {', '.join(collected)})")
    if problems:
        add(
            RuleResult(
                RuleId.PURPOSE_LIMITATION,
                False,
                f"Purpose limitation: the agreement declares no use for {purpose_id!r} "
                f"compatible with why these were collected: {'; '.join(problems)}.",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.PURPOSE_LIMITATION,
                True,
                f"Every field was collected for a purpose the agreement declares "
                f"compatible with {purpose_id!r} ({', '.join(sorted(compatible))}).",
            )
        )


def _review_rule(add: Callable[[RuleResult], None], purpose_id: str, reviewers: int) -> None:
    if reviewers:
        who = "two different reviewers" if reviewers == 2 else "a reviewer"
        add(
            RuleResult(
                RuleId.REVIEW,
                True,
                f"The agreement requires {who} to approve {purpose_id!r} requests.",
            )
        )
    else:
        add(
            RuleResult(
                RuleId.REVIEW, True, f"The agreement allows {purpose_id!r} requests without review."
            )
        )


def decide(
    request: TracingRequest,
    agreements: AgreementSet,
    *,
    received_on: date,
    firewall_on: bool = True,
    firewall: FirewallPolicy = DEFAULT_POLICY,
    cap_usage: int = 0,
) -> Decision:
    """Decide a request for a person's details (or, for a status check, their entitlement).

    ``received_on`` is the date safehaven received it (caps count by month received, so a
    requester cannot escape a full month by back-dating); the agreement status applied is
    the one in force on ``request.made_on``.  ``cap_usage`` is how many requests under
    ``request.agreement`` already count against its cap in the month of ``received_on``.
    """
    rules: list[RuleResult] = []
    add = rules.append
    made_on = request.made_on
    agreement, terms, ref = _begin(add, request, received_on, agreements, firewall_on, firewall)
    if agreement is None or terms is None:
        return _finish(rules, ref, firewall_on, 0, (), None)

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
        clinical = [f for f in forbidden if f in CLINICAL_FIELDS]
        why = []
        if clinical:
            why.append(f"clinical data never leaves: {', '.join(clinical)}")
        others = [f for f in forbidden if f not in CLINICAL_FIELDS]
        if others:
            why.append(f"the agreement forbids: {', '.join(others)}")
        add(
            RuleResult(
                RuleId.FIELDS_FORBIDDEN,
                False,
                f"Forbidden field(s) asked for ({'; '.join(why)}).",
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

    _purpose_limitation(
        add,
        agreement,
        agreements.profile_for(agreement),
        request.purpose,
        [f for f in asked if f not in forbidden],
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
    _review_rule(add, request.purpose, reviewers)
    fields_out = tuple(f for f in asked if f in permitted)
    return _finish(rules, ref, firewall_on, reviewers, fields_out, cap_month)


def decide_aggregate(
    request: AggregateRequest,
    agreements: AgreementSet,
    *,
    received_on: date,
    firewall_on: bool = True,
    firewall: FirewallPolicy = DEFAULT_POLICY,
) -> Decision:
    """Decide a request for counts.  ``permitted_fields`` of the result lists the
    dimensions that may be released; cell suppression is applied when the table is built."""
    rules: list[RuleResult] = []
    add = rules.append
    agreement, terms, ref = _begin(add, request, received_on, agreements, firewall_on, firewall)
    if agreement is None or terms is None:
        return _finish(rules, ref, firewall_on, 0, (), None)

    allowed = terms.aggregates
    if allowed is None:
        add(
            RuleResult(
                RuleId.AGGREGATE_PERMITTED,
                False,
                f"Purpose {request.purpose!r} of this agreement does not permit "
                "aggregate releases.",
            )
        )
        dims_ok: list[str] = []
    else:
        add(
            RuleResult(
                RuleId.AGGREGATE_PERMITTED,
                True,
                f"Aggregates permitted for {request.purpose!r} with cells of at least "
                f"{allowed.min_cell}.",
            )
        )
        points = [d for d in request.dimensions if d in POINT_LOCATIONS]
        outside = [d for d in request.dimensions if d not in allowed.dimensions and d not in points]
        if points or outside:
            parts = []
            if points:
                parts.append(f"point locations are never released: {', '.join(points)}")
            if outside:
                parts.append(
                    f"not permitted: {', '.join(outside)} (permitted: "
                    f"{', '.join(allowed.dimensions)})"
                )
            add(
                RuleResult(
                    RuleId.AGGREGATE_DIMENSIONS,
                    False,
                    "Dimension(s) refused; " + "; ".join(parts) + ".",
                )
            )
        else:
            add(
                RuleResult(
                    RuleId.AGGREGATE_DIMENSIONS,
                    True,
                    f"Breakdown by {', '.join(request.dimensions)} is permitted.",
                )
            )
        dims_ok = [d for d in request.dimensions if d in allowed.dimensions]

    sources = [AGGREGATE_DIMENSIONS[d] for d in request.dimensions if d in AGGREGATE_DIMENSIONS]
    _purpose_limitation(add, agreement, agreements.profile_for(agreement), request.purpose, sources)
    reviewers = terms.review.reviewers
    _review_rule(add, request.purpose, reviewers)
    return _finish(rules, ref, firewall_on, reviewers, tuple(dims_ok), None)


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
        reviewers = 0  # nothing left to review
    elif reviewers:
        outcome = Outcome.NEEDS_REVIEW
    else:
        outcome = Outcome.APPROVED
    return Decision(outcome, tuple(rules), ref, firewall_on, reviewers, fields_out, cap_month)
