"""Agreement validation and the canonical hash."""

from __future__ import annotations

import copy
import random
from datetime import date

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from safehaven.domain.agreement import Agreement, AgreementStatus
from tests.builders import bundled_yaml

NAMES = [
    "nhs-digital-home-office-2017",
    "dfe-home-office-2016",
    "nhs-police-tracing",
    "home-office-status-checks",
]


def data(name: str = "nhs-digital-home-office-2017") -> dict:
    return yaml.safe_load(bundled_yaml(name))


def _shuffled(value, rnd: random.Random):
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rnd) for v in value]
    return value


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(NAMES), st.integers(0, 2**32 - 1), st.booleans(), st.integers(1, 8))
def test_hash_ignores_key_order_and_yaml_layout(name, seed, flow, indent):
    original = Agreement.model_validate(data(name))
    reordered = _shuffled(data(name), random.Random(seed))
    text = yaml.safe_dump(
        reordered,
        default_flow_style=flow,
        sort_keys=False,
        indent=indent + 1,
        allow_unicode=bool(seed % 2),
    )
    again = Agreement.model_validate(yaml.safe_load(text))
    assert again.sha256 == original.sha256
    assert len(original.sha256) == 64


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(NAMES), st.text(min_size=1, max_size=30))
def test_hash_changes_with_meaning(name, suffix):
    base = data(name)
    changed = copy.deepcopy(base)
    changed["status_history"][-1]["note"] += suffix
    assert Agreement.model_validate(changed).sha256 != Agreement.model_validate(base).sha256


def test_hash_changes_when_a_field_is_permitted():
    base = data("dfe-home-office-2016")
    changed = copy.deepcopy(base)
    changed["fields"]["permitted"].append("gp_practice")
    assert Agreement.model_validate(changed).sha256 != Agreement.model_validate(base).sha256


@pytest.mark.parametrize(
    ("edit", "location"),
    [
        (lambda d: d["fields"]["permitted"].append("diagnosis"), "fields.permitted"),
        (lambda d: d["fields"]["permitted"].append("shoe_size"), "fields.permitted"),
        (lambda d: d["purposes"][0].update(id="world-domination"), "purposes.0.id"),
        (lambda d: d["purposes"][0].update(legal_bases=["made-up-act"]), "purposes.0.legal_bases"),
        (lambda d: d["status_history"].reverse(), "status_history"),
        (lambda d: d["status_history"][2].pop("purposes"), "status_history.2.purposes"),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d.pop("parties"), "parties"),
        (lambda d: d.update(register="astrology"), "register"),
        (lambda d: d["status_history"][0].update(date="27/09/2016"), "status_history.0.date"),
    ],
)
def test_invalid_agreements_are_rejected_naming_the_field(edit, location):
    d = data()
    edit(d)
    with pytest.raises(ValidationError) as info:
        Agreement.model_validate(d)
    assert location in str(info.value)


def test_status_on_and_purposes_on():
    a = Agreement.model_validate(data())
    assert a.status_on(date(2016, 9, 26)) is None
    assert a.status_on(date(2016, 9, 27)).status is AgreementStatus.DRAFT
    assert a.purposes_on(date(2016, 12, 31)) == frozenset()
    assert a.purposes_on(date(2017, 1, 1)) == {
        "immigration-offence-trace",
        "deportation-serious-crime",
        "welfare-protection",
    }
    assert a.purposes_on(date(2018, 5, 9)) == {"deportation-serious-crime", "welfare-protection"}
    assert a.purposes_on(date(2018, 11, 2)) == frozenset()
    assert a.status_on(date(2030, 1, 1)).status is AgreementStatus.WITHDRAWN


def test_bundled_agreements_cite_seeds():
    for name in NAMES:
        a = Agreement.model_validate(data(name))
        assert a.sources and all(s.seed.endswith(".txt") and s.paragraph for s in a.sources)
        text = bundled_yaml(name)
        assert "seed" in text
