"""Request format v1: strict parsing, errors that name the field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safehaven.domain.request import RequestFormatError, parse_request
from tests.builders import NHS_TRACE, body


def problems(raw: str | bytes) -> list[str]:
    with pytest.raises(RequestFormatError) as info:
        parse_request(raw)
    return info.value.problems


def test_valid_request_round_trips():
    r = parse_request(json.dumps(NHS_TRACE))
    assert r.subject.address_postalcode == "LS1 4AP"
    assert r.model_dump(mode="json", by_alias=True)["subject"]["address-postalcode"] == "LS1 4AP"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("{not json", "malformed JSON"),
        ("", "malformed JSON"),
        (json.dumps(body(NHS_TRACE, requester=None)), "requester: required field is missing"),
        (json.dumps(body(NHS_TRACE, subject__family=None)), "subject.family: required"),
        (json.dumps(body(NHS_TRACE, made_on="01/06/2017")), "made_on:"),
        (json.dumps(body(NHS_TRACE, made_on="2017-13-01")), "made_on:"),
        (json.dumps(body(NHS_TRACE, made_on=20170601)), "made_on:"),
        (json.dumps(body(NHS_TRACE, subject__birthdate="31-01-1990")), "subject.birthdate:"),
        (json.dumps(body(NHS_TRACE, purpose="curiosity")), "purpose: unknown purpose 'curiosity'"),
        (json.dumps(body(NHS_TRACE, fields=["address", "shoe_size"])), "fields: unknown field"),
        (json.dumps(body(NHS_TRACE, fields=[])), "fields:"),
        (json.dumps(body(NHS_TRACE, colour="blue")), "colour: unknown field"),
        (json.dumps(body(NHS_TRACE, subject__eye_colour="blue")), "subject.eye_colour: unknown"),
        (json.dumps(body(NHS_TRACE, grounds__serious_crime="yes")), "grounds.serious_crime:"),
        (json.dumps(body(NHS_TRACE, grounds__lost_contact=1)), "grounds.lost_contact:"),
        (
            json.dumps(body(NHS_TRACE, subject__nhs_number="9434765918")),
            "subject.nhs_number: not a valid",
        ),
        (
            json.dumps(body(NHS_TRACE, **{"subject__address-postalcode": "NOT A POSTCODE"})),
            "subject.address-postalcode:",
        ),
        (json.dumps(body(NHS_TRACE, requester="Home Office")), "requester:"),
        (json.dumps([1, 2]), "(request):"),
        (b"\xff\xfe{}", "(request):"),
    ],
)
def test_bad_input_names_the_field(raw, field):
    found = problems(raw)
    assert any(field in p for p in found), found


def test_every_problem_is_reported_not_just_the_first():
    found = problems(
        json.dumps(body(NHS_TRACE, purpose="curiosity", made_on="yesterday", subject__family=None))
    )
    assert {p.split(":")[0] for p in found} >= {"purpose", "made_on", "subject.family"}


def test_valid_nhs_number_accepted():
    r = parse_request(json.dumps(body(NHS_TRACE, subject__nhs_number="9434765919")))
    assert r.subject.nhs_number == "9434765919"


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=12), children, max_size=5)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_crashes_the_parser(value):
    raw = json.dumps(value)
    try:
        parse_request(raw)
    except RequestFormatError as exc:
        assert exc.problems and all(":" in p for p in exc.problems)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(list(NHS_TRACE)), st.text(max_size=10), max_size=4))
def test_mistyped_known_fields_always_name_a_field(changes):
    raw = json.dumps({**NHS_TRACE, **changes})
    try:
        parse_request(raw)
    except RequestFormatError as exc:
        named = {p.split(":")[0].split(".")[0] for p in exc.problems}
        assert named & set(changes), (changes, exc.problems)
