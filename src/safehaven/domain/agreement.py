"""Data-sharing agreements as validated, hash-pinned data.

An agreement is the only thing that can make a disclosure lawful in safehaven, so its
model refuses anything ambiguous at load time (unknown purposes or fields, clinical data
marked as permitted, a status history out of order) rather than letting the decision
engine guess later.  Every loaded agreement carries the sha256 of its canonical form, and
every decision names that hash.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from safehaven.domain.canonical import content_hash
from safehaven.domain.fields import CLINICAL_FIELDS, FIELDS
from safehaven.domain.purposes import PURPOSES

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,79}$")]


def _iso_date(value: object) -> object:
    """YAML dates, or ``YYYY-MM-DD`` strings; never numbers or datetimes (no guessing)."""
    if isinstance(value, datetime):
        raise ValueError("must be a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) == 10:
        return date.fromisoformat(value)
    raise ValueError("must be a date in the format YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterKind(StrEnum):
    """What the controller's register holds; the firewall reasons about this."""

    HEALTH = "health"
    EDUCATION = "education"
    SOCIAL_CARE = "social-care"
    HOUSING = "housing"
    TAX_BENEFITS = "tax-benefits"
    TRANSPORT = "transport"
    FINANCIAL = "financial"
    IMMIGRATION_STATUS = "immigration-status"


class AgreementStatus(StrEnum):
    DRAFT = "draft"
    IN_FORCE = "in_force"
    NARROWED = "narrowed"
    SUSPENDED = "suspended"
    WITHDRAWN = "withdrawn"


#: Statuses under which at least some purposes may be served.
OPERATIVE_STATUSES = frozenset({AgreementStatus.IN_FORCE, AgreementStatus.NARROWED})


class GroundName(StrEnum):
    """Grounds a requester states; an agreement lists which a purpose requires."""

    OFFENCE = "offence"
    OFFENCE_DATE = "offence_date"
    SERIOUS_CRIME = "serious_crime"
    WELFARE_CONCERN = "welfare_concern"
    OTHER_ATTEMPTS = "other_attempts"
    LOST_CONTACT = "lost_contact"
    BELIEVED_IN_UK = "believed_in_uk"
    DEPORTATION_CONSIDERED = "deportation_considered"
    APPLICATION_REFERENCE = "application_reference"


class ReviewRule(StrEnum):
    NONE = "none"
    ONE = "one"
    TWO = "two"

    @property
    def reviewers(self) -> int:
        return {"none": 0, "one": 1, "two": 2}[self.value]


class Party(_Model):
    id: Slug
    name: NonEmpty


class Parties(_Model):
    controller: Party
    requesters: Annotated[list[Party], Field(min_length=1)]
    others: list[Party] = []


class LegalBasis(_Model):
    id: Slug
    citation: NonEmpty
    description: str = ""
    valid_from: IsoDate | None = None
    valid_to: IsoDate | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LegalBasis:
        if self.valid_from and self.valid_to and self.valid_from > self.valid_to:
            raise ValueError("valid_from must not be after valid_to")
        return self

    def in_force_on(self, day: date) -> bool:
        if self.valid_from is not None and day < self.valid_from:
            return False
        return not (self.valid_to is not None and day > self.valid_to)


#: Dimensions an aggregate may be broken down by, and the register field each comes from.
AGGREGATE_DIMENSIONS: dict[str, str] = {
    "area": "address-postalcode",
    "age_band": "birthdate",
    "gender": "gender",
    "nationality_group": "nationality",
    "month": "registration_date",
}

#: Breakdowns that would place a person on a map; never allowed in an aggregate.
POINT_LOCATIONS = frozenset(
    {"latitude", "longitude", "coordinates", "location", "address", "postcode", "uprn"}
)


class AggregateTerms(_Model):
    """Terms for count tables: which breakdowns, and the smallest cell that may be shown."""

    dimensions: Annotated[list[str], Field(min_length=1)]
    min_cell: Annotated[int, Field(ge=10)] = 10

    @model_validator(mode="after")
    def _no_points(self) -> AggregateTerms:
        bad = [d for d in self.dimensions if d in POINT_LOCATIONS]
        if bad:
            raise ValueError(f"point locations can never be an aggregate dimension: {bad}")
        unknown = [d for d in self.dimensions if d not in AGGREGATE_DIMENSIONS]
        if unknown:
            raise ValueError(
                f"unknown dimension(s) {unknown}; known: {sorted(AGGREGATE_DIMENSIONS)}"
            )
        return self


class PurposeTerms(_Model):
    id: NonEmpty
    legal_bases: Annotated[list[Slug], Field(min_length=1)]
    required_grounds: list[GroundName] = []
    offence_max_age_years: Annotated[int, Field(ge=1, le=100)] | None = None
    fields: list[str] | None = None
    aggregates: AggregateTerms | None = None
    review: ReviewRule = ReviewRule.ONE
    note: str = ""

    @model_validator(mode="after")
    def _unique_grounds(self) -> PurposeTerms:
        if len(set(self.required_grounds)) != len(self.required_grounds):
            raise ValueError("required_grounds: a ground is listed twice")
        if self.offence_max_age_years is not None and (
            GroundName.OFFENCE_DATE not in self.required_grounds
        ):
            raise ValueError("required_grounds: an offence age limit needs offence_date")
        return self


class CompatibleUse(_Model):
    """The agreement's claim that data collected for one purpose may serve others."""

    collected_for: Slug
    purposes: Annotated[list[str], Field(min_length=1)]
    note: str = ""


class FieldTerms(_Model):
    permitted: Annotated[list[str], Field(min_length=1)]
    forbidden: list[str] = []


class VolumeCap(_Model):
    per_month: Annotated[int, Field(ge=1)]
    counts: Literal["requests_not_refused"] = "requests_not_refused"
    note: str = ""


class Exemption(_Model):
    id: Slug
    description: NonEmpty
    legal_basis: NonEmpty
    review_after_days: Annotated[int, Field(ge=1, le=3660)]


class Notification(_Model):
    rule: Literal["notify", "notify_unless_exempt"] = "notify_unless_exempt"
    exemptions: list[Exemption] = []

    @model_validator(mode="after")
    def _unique(self) -> Notification:
        ids = [e.id for e in self.exemptions]
        if len(set(ids)) != len(ids):
            raise ValueError("exemptions: duplicate id")
        if self.rule == "notify" and self.exemptions:
            raise ValueError("exemptions: a 'notify' rule allows no exemption")
        return self


class Retention(_Model):
    request_days: Annotated[int, Field(ge=1)]
    disclosure_days: Annotated[int, Field(ge=1)]


class StatusChange(_Model):
    date: IsoDate
    status: AgreementStatus
    purposes: list[str] | None = None
    note: NonEmpty
    source: str = ""


class Source(_Model):
    seed: NonEmpty
    paragraph: NonEmpty
    summary: str = ""


class Agreement(_Model):
    """One version of a data-sharing agreement."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Slug
    version: Annotated[str, Field(pattern=r"^\d+(\.\d+){0,2}$")]
    title: NonEmpty
    # ``register`` in files; renamed here because pydantic's BaseModel has that attribute.
    register_kind: RegisterKind = Field(alias="register")
    parties: Parties
    legal_bases: Annotated[list[LegalBasis], Field(min_length=1)]
    purposes: Annotated[list[PurposeTerms], Field(min_length=1)]
    fields: FieldTerms
    volume_cap: VolumeCap | None = None
    compatible_uses: list[CompatibleUse] = []
    notification: Notification
    retention: Retention
    status_history: Annotated[list[StatusChange], Field(min_length=1)]
    sources: Annotated[list[Source], Field(min_length=1)]

    @model_validator(mode="after")
    def _coherent(self) -> Agreement:
        errors: list[str] = []
        basis_ids = [b.id for b in self.legal_bases]
        if len(set(basis_ids)) != len(basis_ids):
            errors.append("legal_bases: duplicate id")
        for name in ("permitted", "forbidden"):
            for i, f in enumerate(getattr(self.fields, name)):
                if f not in FIELDS:
                    errors.append(f"fields.{name}.{i}: unknown field {f!r}")
        clinical = sorted(set(self.fields.permitted) & CLINICAL_FIELDS)
        if clinical:
            errors.append(f"fields.permitted: clinical fields can never be permitted: {clinical}")
        both = sorted(set(self.fields.permitted) & set(self.fields.forbidden))
        if both:
            errors.append(f"fields: listed as both permitted and forbidden: {both}")
        seen: set[str] = set()
        for i, p in enumerate(self.purposes):
            if p.id not in PURPOSES:
                errors.append(f"purposes.{i}.id: unknown purpose {p.id!r}")
            if p.id in seen:
                errors.append(f"purposes.{i}.id: duplicate purpose {p.id!r}")
            seen.add(p.id)
            for j, b in enumerate(p.legal_bases):
                if b not in basis_ids:
                    errors.append(f"purposes.{i}.legal_bases.{j}: undeclared legal basis {b!r}")
            for j, f in enumerate(p.fields or []):
                if f not in self.fields.permitted:
                    errors.append(
                        f"purposes.{i}.fields.{j}: {f!r} is not in the agreement's permitted fields"
                    )
        for i, use in enumerate(self.compatible_uses):
            for j, pid in enumerate(use.purposes):
                if pid not in seen:
                    errors.append(
                        f"compatible_uses.{i}.purposes.{j}: {pid!r} is not a purpose of this "
                        "agreement"
                    )
        previous: date | None = None
        for i, change in enumerate(self.status_history):
            if previous is not None and change.date <= previous:
                errors.append(f"status_history.{i}.date: dates must strictly increase")
            previous = change.date
            if change.purposes is not None:
                if change.status is AgreementStatus.NARROWED and not change.purposes:
                    errors.append(
                        f"status_history.{i}.purposes: narrowed to nothing is 'suspended'"
                    )
                if change.status is not AgreementStatus.NARROWED:
                    errors.append(
                        f"status_history.{i}.purposes: only a 'narrowed' status lists purposes"
                    )
                for j, pid in enumerate(change.purposes):
                    if pid not in seen:
                        errors.append(
                            f"status_history.{i}.purposes.{j}: {pid!r} is not a purpose of this "
                            "agreement"
                        )
            elif change.status is AgreementStatus.NARROWED:
                errors.append(f"status_history.{i}.purposes: a 'narrowed' status must list them")
        requester_ids = [r.id for r in self.parties.requesters]
        if len(set(requester_ids)) != len(requester_ids):
            errors.append("parties.requesters: duplicate id")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def model_post_init(self, context: object, /) -> None:
        self.sha256  # noqa: B018 - hash at load time, not at first use

    # cached_property, not PrivateAttr: pydantic serves private attributes through
    # BaseModel.__getattr__ (~2 µs a read) and the engine reads these on every decision;
    # a cached_property lives in the instance __dict__ (~0.1 µs) and is not serialised.
    @cached_property
    def sha256(self) -> str:
        # Defaults are left out so that adding an optional key to the format does not
        # change the hash of files that do not use it (a stored decision's hash must stay
        # reproducible from the file it was made under), and ``review: one`` written out
        # hashes the same as leaving the default.
        return content_hash(self.model_dump(mode="json", by_alias=True, exclude_defaults=True))

    @cached_property
    def requester_ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.parties.requesters)

    @cached_property
    def _purpose_map(self) -> dict[str, PurposeTerms]:
        return {p.id: p for p in self.purposes}

    @cached_property
    def _compatible_map(self) -> dict[str, frozenset[str]]:
        compatible: dict[str, set[str]] = {}
        for use in self.compatible_uses:
            for pid in use.purposes:
                compatible.setdefault(pid, set()).add(use.collected_for)
        return {k: frozenset(v) for k, v in compatible.items()}

    def purpose_terms(self, purpose_id: str) -> PurposeTerms | None:
        return self._purpose_map.get(purpose_id)

    def status_on(self, day: date) -> StatusChange | None:
        """The status in force on ``day``: the last change dated on or before it."""
        current: StatusChange | None = None
        for change in self.status_history:
            if change.date > day:
                break
            current = change
        return current

    def purposes_on(self, day: date) -> frozenset[str]:
        """Purposes that may be served under the status in force on ``day``."""
        status = self.status_on(day)
        if status is None or status.status not in OPERATIVE_STATUSES:
            return frozenset()
        if status.status is AgreementStatus.NARROWED and status.purposes is not None:
            return frozenset(status.purposes)
        return frozenset(self._purpose_map)

    def compatible_collection_purposes(self, purpose_id: str) -> frozenset[str]:
        """Collection purposes this agreement declares compatible with ``purpose_id``."""
        return self._compatible_map.get(purpose_id, frozenset())

    def permitted_fields(self, purpose_id: str) -> frozenset[str]:
        terms = self._purpose_map.get(purpose_id)
        if terms is None:
            return frozenset()
        return frozenset(terms.fields if terms.fields is not None else self.fields.permitted)
