"""Request format v1: what a requesting agency sends.

Parsing is strict on purpose.  A tracing request that is silently coerced (a day/month
swapped, a number read as a date, an unknown key ignored) can find the wrong person, so
every deviation is an error that names the field, and nothing is guessed.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from safehaven.domain.fields import FIELDS
from safehaven.domain.nhs_number import is_valid_nhs_number
from safehaven.domain.purposes import PURPOSES

#: UK postcode shape (outward + inward code), case-insensitive, optional single space.
# Spelled out in both cases (no inline flags) so JSON Schema validators in other languages
# (ECMA regex) accept the published schema too.
POSTCODE_PATTERN = r"^[A-Za-z]{1,2}[0-9][A-Za-z0-9]? ?[0-9][A-Za-z]{2}$"

Name = Annotated[str, Field(min_length=1, max_length=100)]
Postcode = Annotated[str, Field(pattern=POSTCODE_PATTERN)]


def _check_nhs_number(value: str) -> str:
    if not is_valid_nhs_number(value):
        raise ValueError("not a valid NHS number (10 digits with a modulus-11 check digit)")
    return value


def _check_purpose(value: str) -> str:
    if value not in PURPOSES:
        raise ValueError(f"unknown purpose {value!r}; known purposes: {sorted(PURPOSES)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class KnownAddress(_Strict):
    """What the requester already holds; lets statistics tell new information from old."""

    line: Annotated[str, Field(max_length=200)] | None = None
    postalcode: Postcode


class Subject(_Strict):
    family: Name
    given: Name | None = None
    gender: Literal["male", "female", "other", "unknown"] | None = None
    birthdate: date | None = None
    address_postalcode: Postcode | None = Field(default=None, alias="address-postalcode")
    nhs_number: (
        Annotated[str, Field(pattern=r"^[0-9]{10}$"), AfterValidator(_check_nhs_number)] | None
    ) = None
    known_address: KnownAddress | None = None


class Grounds(_Strict):
    offence: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    offence_date: date | None = None
    serious_crime: bool = False
    deportation_considered: bool = False
    welfare_concern: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    other_attempts: list[Annotated[str, Field(min_length=1, max_length=500)]] = []
    lost_contact: bool = False
    believed_in_uk: bool = False
    application_reference: Annotated[str, Field(min_length=1, max_length=100)] | None = None

    def has(self, name: str) -> bool:
        """Whether a ground is stated: a true flag, a non-empty text, list or a date."""
        value = getattr(self, name)
        return bool(value) if not isinstance(value, date) else True


class TracingRequest(_Strict):
    """A request for a person's details (or, for a status check, their entitlement)."""

    format: Literal["safehaven.request/v1"] = "safehaven.request/v1"
    request_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = None
    requester: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,79}$")]
    agreement: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,79}$")]
    purpose: str
    made_on: date
    subject: Subject
    grounds: Grounds = Grounds()
    fields: Annotated[list[str], Field(min_length=1, max_length=len(FIELDS))]

    @field_validator("purpose")
    @classmethod
    def _known_purpose(cls, value: str) -> str:
        return _check_purpose(value)

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in FIELDS]
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; known fields: {sorted(FIELDS)}")
        if len(set(value)) != len(value):
            raise ValueError("a field is named more than once")
        return value


class AggregateRequest(_Strict):
    """A request for counts, never for a person: answered only with disclosure control."""

    format: Literal["safehaven.aggregate/v1"]
    request_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = None
    requester: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,79}$")]
    agreement: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,79}$")]
    purpose: str
    made_on: date
    dimensions: Annotated[
        list[Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")]], Field(min_length=1, max_length=2)
    ]

    @field_validator("purpose")
    @classmethod
    def _known_purpose(cls, value: str) -> str:
        return _check_purpose(value)

    @field_validator("dimensions")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a dimension is named more than once")
        return value


class RequestFormatError(ValueError):
    """A request that cannot be accepted, with one message per offending field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def describe_validation_error(
    error: ValidationError, *, document: str = "request format v1", root: str = "(request)"
) -> list[str]:
    """One line per problem, each starting with the dotted path of the field."""
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or root
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = f"unknown field (not part of {document})"
        elif item["type"] == "missing":
            msg = "required field is missing"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        problems.append(f"{where}: {msg}")
    return problems


def parse_request(raw: str | bytes) -> TracingRequest:
    """Parse a JSON request, raising :class:`RequestFormatError` naming each bad field."""
    _check_json(raw)
    try:
        return TracingRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestFormatError(describe_validation_error(exc)) from None


def _check_json(raw: str | bytes) -> None:
    """Malformed JSON gets its own message (line and column), not pydantic's."""
    try:
        json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestFormatError(
            [f"(request): malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]
        ) from None
    except UnicodeDecodeError:
        raise RequestFormatError(["(request): not valid UTF-8"]) from None


def parse_aggregate_request(raw: str | bytes) -> AggregateRequest:
    """Parse a JSON aggregate request, raising :class:`RequestFormatError` naming fields."""
    _check_json(raw)
    try:
        return AggregateRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestFormatError(
            describe_validation_error(exc, document="aggregate request format v1")
        ) from None


def parse_request_obj(obj: Any) -> TracingRequest:
    """Parse an already-decoded JSON value (e.g. one line of a bulk file)."""
    return parse_request(json.dumps(obj))
