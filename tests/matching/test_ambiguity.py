"""The unique-match rule: two people the evidence cannot tell apart disclose nothing."""

from __future__ import annotations

import pandas as pd

from safehaven.matching.index import RegisterIndex
from safehaven.matching.person import PERSON_SPEC
from safehaven.matching.scorer import Matcher

PERSON = {
    "family": "Okonkwo-Barnes", "given": "Tobias", "gender": "male",
    "birthdate": "2004-05-17", "postcode": "LS6 2QT", "address_line1": "14 Cardigan Road",
}


def _with(register: pd.DataFrame, people: list[dict[str, object]]) -> pd.DataFrame:
    extra = []
    template = register.iloc[0].to_dict()
    for i, p in enumerate(people):
        extra.append({**template, "previous_postcode": None, **p,
                      "record_id": f"EXTRA{i}", "nhs_number": f"999{i:07d}"})
    return pd.concat([register, pd.DataFrame(extra)], ignore_index=True)


def _matcher(frame: pd.DataFrame, like: Matcher) -> Matcher:
    return Matcher(RegisterIndex.from_frame(PERSON_SPEC, frame, "record_id"), like.weights)


def _query(p: dict[str, object]) -> dict[str, object]:
    return {"family": p["family"], "given": p["given"], "gender": p.get("gender"),
            "birthdate": p["birthdate"], "postcode": p["postcode"]}


def test_a_unique_person_is_matched(register: pd.DataFrame, matcher: Matcher) -> None:
    m = _matcher(_with(register, [PERSON]), matcher)
    result = m.match(_query(PERSON))
    assert result.status == "matched"
    assert result.record_id == "EXTRA0"
    assert result.score > 0.999


def test_identical_twins_with_the_same_name_are_ambiguous(register: pd.DataFrame,
                                                           matcher: Matcher) -> None:
    m = _matcher(_with(register, [PERSON, dict(PERSON)]), matcher)
    result = m.match(_query(PERSON))
    assert result.status == "ambiguous"
    assert result.record_id is None and result.row is None
    assert result.score > 0.999  # confident that *someone* matches; still nothing disclosed


def test_same_name_and_birthdate_in_one_postcode_is_ambiguous(register: pd.DataFrame,
                                                              matcher: Matcher) -> None:
    other = {**PERSON, "address_line1": "3 Ash Grove", "gender": "unknown"}
    m = _matcher(_with(register, [PERSON, other]), matcher)
    query = _query(PERSON)
    query["gender"] = None  # the requester does not know it
    assert m.match(query).status == "ambiguous"


def test_twins_with_different_names_are_told_apart(register: pd.DataFrame,
                                                   matcher: Matcher) -> None:
    sister = {**PERSON, "given": "Harriet", "gender": "female"}
    m = _matcher(_with(register, [PERSON, sister]), matcher)
    result = m.match(_query(PERSON))
    assert result.status == "matched" and result.record_id == "EXTRA0"


def test_someone_not_in_the_register_is_no_match(matcher: Matcher) -> None:
    result = matcher.match({"family": "Zzyzxwv", "given": "Quillon", "birthdate": "1901-01-01",
                            "postcode": "ZE3 9XX"})
    assert result.status == "no_match"
    assert result.record_id is None
    assert 0.0 <= result.score < 0.5
