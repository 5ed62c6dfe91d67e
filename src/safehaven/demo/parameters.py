"""The demo's stream parameters, loaded strictly from ``parameters.yaml``.

The file is the one place the replay's inputs live, so a typo in it must fail loudly
(``extra="forbid"``) rather than silently fall back to a default nobody chose.
"""

from __future__ import annotations

from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Share = Annotated[float, Field(ge=0.0, le=1.0)]
Month = Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]
RegisterName = Literal["health", "education", "immigration-status"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Replay(_Model):
    start: date = Field(alias="from")
    end: date = Field(alias="to")


class RegisterParams(_Model):
    people: Annotated[int, Field(ge=1000)]
    education_born_from: date
    education_born_to: date
    not_entitled_share: Share
    training_sample: Annotated[int, Field(ge=100)]
    u_pairs: Annotated[int, Field(ge=1000)]


class ErrorRates(_Model):
    family_typo: Share
    family_changed: Share
    given_typo: Share
    given_missing: Share
    dob_swapped: Share
    dob_wrong: Share
    postcode_typo: Share


class AgreementPeriod(_Model):
    start: date = Field(alias="from")
    agreement: str


class Arrival(_Model):
    start: Month = Field(alias="from")
    end: Month = Field(alias="to")
    per_month: Annotated[float, Field(ge=0)]


class Stream(_Model):
    id: str
    label: str
    requester: str | list[str]
    register_name: RegisterName = Field(alias="register")
    agreements: Annotated[list[AgreementPeriod], Field(min_length=1)]
    arrivals: Annotated[list[Arrival], Field(min_length=1)]
    fields: Annotated[list[str], Field(min_length=1)]
    present_in_register: Share
    error_multiplier: Annotated[float, Field(ge=0.0, le=5.0)]
    nhs_number_share: Share
    serious_crime_share: Share
    old_offence_share: Share = 0.0
    welfare_share: Share
    address_known_share: Share
    stale_address_share: Share
    grounds_missing_share: Share
    extra_field_share: Share
    extra_field: str | None = None
    reviewer_refusal: Share
    exemption_share: Share

    @property
    def requesters(self) -> list[str]:
        return [self.requester] if isinstance(self.requester, str) else list(self.requester)

    def agreement_on(self, day: date) -> str | None:
        """The agreement the requester would cite for a request made on ``day``."""
        chosen = None
        for period in self.agreements:
            if period.start <= day:
                chosen = period.agreement
        return chosen


class Published(_Model):
    id: str
    label: str
    agreement: str
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    numerator: Literal["disclosed", "matched"]
    share: Share
    counts: str
    source: str


class NationalityShares(_Model):
    """How a controller's nationality question was answered; the rest answered British.

    ``refused`` is stored as the answer ``refused`` and ``not_obtained`` as an empty value,
    as the School Census recorded them (seed 004 ¶37)."""

    refused: Share
    not_obtained: Share
    non_uk: Share
    non_uk_values: Annotated[list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]],
                             Field(min_length=1)]

    @field_validator("non_uk_values")
    @classmethod
    def _not_british(cls, value: list[str]) -> list[str]:
        if "GB" in value:
            raise ValueError("GB is the British answer, not a non-UK nationality")
        return value


class DatasetSpec(_Model):
    """One controller's synthetic records for aggregate releases (no names, no numbers)."""

    controller: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,79}$")]
    label: str
    records: Annotated[int, Field(ge=100, le=1_000_000)]
    #: Ages are drawn uniformly between these (inclusive) on ``ages_on``.
    age_years: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(le=110)]]
    ages_on: date
    #: Postcode district -> relative weight.
    areas: Annotated[dict[Annotated[str, Field(pattern=r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")],
                          Annotated[float, Field(gt=0)]], Field(min_length=1)]
    gender: Annotated[dict[str, Annotated[float, Field(gt=0)]], Field(min_length=1)]
    nationality: NationalityShares
    #: The ``registered_on`` column (date first seen), drawn uniformly in this range.
    first_seen: tuple[date, date] | None = None
    #: ``latitude`` / ``longitude`` columns, as an outreach worker's app records them; they
    #: are in the file so that the demo shows they never leave it.
    point_locations: bool = False


class CaseReview(_Model):
    after_days: Annotated[int, Field(ge=0, le=365)]
    reviewer: str
    verdict: Literal["approve", "refuse"]
    reason: Annotated[str, Field(min_length=1)]


class AggregateCase(_Model):
    """One request for counts (format ``safehaven.aggregate/v1``), received on its
    ``made_on`` day, and what the simulated reviewers do with it."""

    id: str
    label: str
    request: dict[str, object]
    reviews: list[CaseReview] = []


class Parameters(_Model):
    seed: int
    replay: Replay
    registers: RegisterParams = Field(alias="register")
    error_rates: ErrorRates
    reviewers: Annotated[list[str], Field(min_length=2)]
    review_delay_days: tuple[int, int]
    streams: Annotated[list[Stream], Field(min_length=1)]
    published: list[Published]
    datasets: list[DatasetSpec]
    aggregates: list[AggregateCase]

    @field_validator("reviewers")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("reviewers must be different people (four-eyes)")
        return value

    @model_validator(mode="after")
    def _known_reviewers(self) -> Parameters:
        for case in self.aggregates:
            for review in case.reviews:
                if review.reviewer not in self.reviewers:
                    raise ValueError(f"aggregates: {case.id}: reviewer {review.reviewer!r} is "
                                     f"not one of the reviewers {self.reviewers}")
        return self


def default_path() -> Path:
    return Path(str(resources.files("safehaven.demo") / "parameters.yaml"))


def load_parameters(path: Path | None = None) -> Parameters:
    data = yaml.safe_load((path or default_path()).read_text(encoding="utf-8"))
    return Parameters.model_validate(data)
