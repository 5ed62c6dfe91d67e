"""Every rule id with a passing and a failing case, the seeds' timelines, caps, firewall."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from safehaven.domain.agreement import Agreement
from safehaven.domain.decision import AgreementSet, Outcome, RuleId, decide
from tests.builders import DFE_TRACE, NHS_DEPORT, NHS_TRACE, POLICE, STATUS, bundled_yaml, req

FIREWALL_RULE = "firewall.no-health-education-immigration"


def run(
    agreements: AgreementSet,
    request_body: dict,
    *,
    received: date | None = None,
    firewall_on: bool = False,
    cap_usage: int = 0,
):
    request = req(request_body)
    return decide(
        request,
        agreements,
        received_on=received or date(2026, 1, 1),
        firewall_on=firewall_on,
        cap_usage=cap_usage,
    )


def rule(decision, rule_id: str):
    matches = [r for r in decision.rules if r.id == rule_id]
    assert matches, f"rule {rule_id} was not evaluated: {[r.id for r in decision.rules]}"
    return matches[0]


def refused_by(decision) -> list[str]:
    return [r.id for r in decision.rules if not r.passed]


# Each case: (rule id, passing request, failing request, kwargs for the failing run)
CASES = [
    (
        RuleId.REQUEST_DATES,
        NHS_TRACE,
        {**NHS_TRACE, "made_on": "2017-06-02"},
        {"received": date(2017, 6, 1)},
    ),
    (RuleId.REQUESTER_KNOWN, NHS_TRACE, {**NHS_TRACE, "requester": "acme-debt-collectors"}, {}),
    (RuleId.AGREEMENT_KNOWN, NHS_TRACE, {**NHS_TRACE, "agreement": "no-such-agreement"}, {}),
    (RuleId.AGREEMENT_IN_FORCE, NHS_TRACE, {**NHS_TRACE, "made_on": "2016-12-31"}, {}),
    (RuleId.REQUESTER_PARTY, NHS_TRACE, {**NHS_TRACE, "requester": "metropolitan-police"}, {}),
    (RuleId.PURPOSE_PERMITTED, NHS_TRACE, {**NHS_TRACE, "made_on": "2018-06-01"}, {}),
    (
        RuleId.SUBJECT_IDENTIFIABLE,
        NHS_TRACE,
        {**NHS_TRACE, "subject": {"family": "Testperson", "given": "Alex"}},
        {},
    ),
    (
        RuleId.GROUNDS_REQUIRED,
        NHS_TRACE,
        {**NHS_TRACE, "grounds": {"offence": "s.24", "lost_contact": True}},
        {},
    ),
    (
        RuleId.OFFENCE_AGE,
        POLICE,
        {**POLICE, "grounds": {**POLICE["grounds"], "offence_date": "2012-09-01"}},
        {},
    ),
    (RuleId.FIELDS_FORBIDDEN, NHS_TRACE, {**NHS_TRACE, "fields": ["address", "diagnosis"]}, {}),
    (
        RuleId.FIELDS_PERMITTED,
        NHS_TRACE,
        {**NHS_TRACE, "fields": ["address", "registration_date"]},
        {},
    ),
    (RuleId.VOLUME_CAP, DFE_TRACE, DFE_TRACE, {"cap_usage": 1500}),
]


@pytest.mark.parametrize(
    ("rule_id", "good", "bad", "kwargs"), CASES, ids=[c[0].value for c in CASES]
)
def test_each_rule_passes_and_fails_on_its_own(agreements, rule_id, good, bad, kwargs):
    ok = run(agreements, good)
    assert rule(ok, rule_id).passed, rule(ok, rule_id).reason
    assert ok.outcome is not Outcome.REFUSED, refused_by(ok)

    failing = run(agreements, bad, **kwargs)
    assert failing.outcome is Outcome.REFUSED
    assert rule(failing, rule_id).passed is False
    assert rule(failing, rule_id).reason  # a plain-English explanation, never empty
    assert failing.permitted_fields == ()


def test_unknown_agreement_stops_before_agreement_rules(agreements):
    d = run(agreements, {**NHS_TRACE, "agreement": "no-such-agreement"})
    assert refused_by(d) == ["agreement.known"]
    assert d.agreement is None
    assert "no-such-agreement" in rule(d, "agreement.known").reason


def test_purpose_not_in_agreement_is_refused_by_purpose_rule(agreements):
    d = run(
        agreements,
        {**POLICE, "agreement": "nhs-digital-home-office-2017", "requester": "home-office"},
    )
    assert "purpose.permitted" in refused_by(d)
    assert "not a purpose of this agreement" in rule(d, "purpose.permitted").reason


def _agreement_variant(name: str, edit) -> Agreement:
    data = yaml.safe_load(bundled_yaml(name))
    edit(data)
    return Agreement.model_validate(data)


def test_legal_basis_rule(agreements):
    ok = run(
        agreements,
        {
            **POLICE,
            "made_on": "2018-06-01",
            "grounds": {**POLICE["grounds"], "offence_date": "2018-01-01"},
        },
    )
    basis = rule(ok, RuleId.LEGAL_BASIS)
    assert basis.passed and "Data Protection Act 2018" in basis.reason
    assert "1998" not in basis.reason  # DPA 1998 was repealed on 25 May 2018

    def only_dpa_1998(data):
        data["purposes"][0]["legal_bases"] = ["dpa-1998-s29"]

    variant = AgreementSet.of(
        [
            _agreement_variant("nhs-police-tracing", only_dpa_1998),
            *[a for a in agreements.agreements.values() if a.id != "nhs-police-tracing"],
        ],
        agreements.profiles.values(),
    )
    bad = run(
        variant,
        {
            **POLICE,
            "made_on": "2018-06-01",
            "grounds": {**POLICE["grounds"], "offence_date": "2018-01-01"},
        },
    )
    assert bad.outcome is Outcome.REFUSED
    assert refused_by(bad) == [RuleId.LEGAL_BASIS]
    assert variant.get("nhs-police-tracing").sha256 != agreements.get("nhs-police-tracing").sha256


def test_firewall_on_refuses_health_and_education_for_immigration(agreements):
    for request_body in (NHS_TRACE, NHS_DEPORT, DFE_TRACE):
        on = run(agreements, request_body, firewall_on=True)
        assert on.outcome is Outcome.REFUSED
        assert refused_by(on) == [FIREWALL_RULE]
        off = run(agreements, request_body, firewall_on=False)
        assert off.outcome is Outcome.NEEDS_REVIEW
        assert rule(off, "firewall").passed
        assert "switched off" in rule(off, "firewall").reason
        assert on.firewall_on and not off.firewall_on


def test_firewall_does_not_touch_other_purposes_or_registers(agreements):
    police = run(agreements, POLICE, firewall_on=True)
    assert rule(police, "firewall").passed and police.outcome is Outcome.NEEDS_REVIEW
    status = run(agreements, STATUS, firewall_on=True)
    assert rule(status, "firewall").passed and status.outcome is Outcome.APPROVED
    welfare = run(
        agreements,
        {
            **NHS_TRACE,
            "purpose": "welfare-protection",
            "made_on": "2018-06-01",
            "grounds": {
                "welfare_concern": "risk of trafficking",
                "other_attempts": ["local authority"],
            },
        },
        firewall_on=True,
    )
    assert rule(welfare, "firewall").passed, "welfare is safeguarding, not enforcement"
    assert welfare.outcome is Outcome.NEEDS_REVIEW


@pytest.mark.parametrize(
    ("made_on", "purpose", "outcome", "failed"),
    [
        (
            "2016-06-14",
            "immigration-offence-trace",
            "refused",
            ["agreement.in_force", "purpose.permitted"],
        ),
        (
            "2016-12-31",
            "immigration-offence-trace",
            "refused",
            ["agreement.in_force", "purpose.permitted"],
        ),
        ("2017-01-01", "immigration-offence-trace", "needs_review", []),
        ("2018-05-08", "immigration-offence-trace", "needs_review", []),
        ("2018-05-09", "immigration-offence-trace", "refused", ["purpose.permitted"]),
        ("2018-05-09", "deportation-serious-crime", "needs_review", []),
        ("2018-11-01", "deportation-serious-crime", "needs_review", []),
        (
            "2018-11-02",
            "deportation-serious-crime",
            "refused",
            ["agreement.in_force", "purpose.permitted"],
        ),
        (
            "2019-03-01",
            "immigration-offence-trace",
            "refused",
            ["agreement.in_force", "purpose.permitted"],
        ),
    ],
)
def test_nhs_home_office_timeline(agreements, made_on, purpose, outcome, failed):
    """Before the MoU, in force, narrowed (9 May 2018), withdrawn (2 Nov 2018)."""
    base = NHS_DEPORT if purpose == "deportation-serious-crime" else NHS_TRACE
    d = run(agreements, {**base, "made_on": made_on})
    assert d.outcome.value == outcome
    assert refused_by(d) == failed
    assert d.agreement is not None
    assert d.agreement.sha256 == agreements.get("nhs-digital-home-office-2017").sha256


def test_status_applied_is_the_one_on_the_date_made_not_received(agreements):
    # Made the day before narrowing, received long after withdrawal: judged as made.
    d = run(agreements, {**NHS_TRACE, "made_on": "2018-05-08"}, received=date(2019, 1, 1))
    assert d.outcome is Outcome.NEEDS_REVIEW
    assert "in_force" in rule(d, "agreement.in_force").reason


def test_narrowing_explains_what_remains(agreements):
    d = run(agreements, {**NHS_TRACE, "made_on": "2018-06-01"})
    reason = rule(d, "purpose.permitted").reason
    assert "deportation-serious-crime" in reason and "welfare-protection" in reason


def test_dfe_cap_allows_the_1500th_and_refuses_the_1501st(agreements):
    at_1500 = run(agreements, DFE_TRACE, cap_usage=1499)
    assert at_1500.outcome is Outcome.NEEDS_REVIEW
    assert "request 1500 of at most 1500" in rule(at_1500, "volume.cap").reason
    at_1501 = run(agreements, DFE_TRACE, cap_usage=1500)
    assert at_1501.outcome is Outcome.REFUSED
    assert refused_by(at_1501) == ["volume.cap"]


def test_agreements_without_cap_have_no_cap_rule(agreements):
    d = run(agreements, POLICE, cap_usage=10**9)
    assert all(r.id != "volume.cap" for r in d.rules)
    assert d.outcome is Outcome.NEEDS_REVIEW


@pytest.mark.parametrize(
    ("offence_date", "passed"),
    [
        ("2012-09-02", True),  # one day short of five years before 2017-09-01
        ("2012-09-01", False),  # exactly five years: rejected automatically
        ("2011-03-01", False),
        ("2017-09-02", False),  # after the request was made
    ],
)
def test_offence_age_boundary(agreements, offence_date, passed):
    d = run(agreements, {**POLICE, "grounds": {**POLICE["grounds"], "offence_date": offence_date}})
    assert rule(d, "grounds.offence_age").passed is passed


def test_offence_age_without_date_fails_both_rules(agreements):
    d = run(agreements, {**POLICE, "grounds": {"offence": "Rape", "serious_crime": True}})
    assert {"grounds.required", "grounds.offence_age"} <= set(refused_by(d))
    assert "offence_date" in rule(d, "grounds.required").reason


def test_police_need_serious_crime(agreements):
    d = run(agreements, {**POLICE, "grounds": {**POLICE["grounds"], "serious_crime": False}})
    assert refused_by(d) == ["grounds.required"]
    assert "serious_crime" in rule(d, "grounds.required").reason


def test_dfe_three_conditions(agreements):
    for missing in ("lost_contact", "offence", "believed_in_uk"):
        grounds = {k: v for k, v in DFE_TRACE["grounds"].items() if k != missing}
        d = run(agreements, {**DFE_TRACE, "grounds": grounds})
        assert refused_by(d) == ["grounds.required"]
        assert missing in rule(d, "grounds.required").reason


def test_nationality_is_forbidden_under_dfe(agreements):
    d = run(agreements, {**DFE_TRACE, "fields": ["address", "nationality", "country_of_birth"]})
    assert refused_by(d) == ["fields.forbidden"]
    assert "nationality" in rule(d, "fields.forbidden").reason


def test_status_check_answers_entitlement_only(agreements):
    ok = run(agreements, STATUS)
    assert ok.outcome is Outcome.APPROVED and ok.permitted_fields == ("entitlement",)
    assert ok.reviewers_required == 0
    bad = run(agreements, {**STATUS, "fields": ["entitlement", "address"]})
    assert refused_by(bad) == ["fields.forbidden"]
    bad2 = run(agreements, {**STATUS, "fields": ["entitlement", "gender"]})
    assert refused_by(bad2) == ["fields.permitted"]


def test_review_rule_sets_outcome_and_reviewers(agreements):
    one = run(agreements, NHS_TRACE)
    assert one.outcome is Outcome.NEEDS_REVIEW and one.reviewers_required == 1
    two = run(agreements, NHS_DEPORT, received=date(2018, 7, 1))
    assert two.reviewers_required == 2
    assert "two different reviewers" in rule(two, "review.required").reason


def test_every_rule_is_explained_even_after_a_failure(agreements):
    d = run(
        agreements,
        {**NHS_TRACE, "made_on": "2018-06-01", "fields": ["diagnosis"], "grounds": {}},
        firewall_on=True,
    )
    assert set(refused_by(d)) == {
        "purpose.permitted",
        FIREWALL_RULE,
        "grounds.required",
        "fields.forbidden",
    }
    assert len(d.rules) >= 12


def test_decision_is_deterministic_and_serialisable(agreements):
    a = run(agreements, DFE_TRACE, cap_usage=3).to_dict()
    b = run(agreements, DFE_TRACE, cap_usage=3).to_dict()
    assert a == b
    assert a["agreement"] == {
        "id": "dfe-home-office-2016",
        "version": agreements.get("dfe-home-office-2016").version,
        "sha256": agreements.get("dfe-home-office-2016").sha256,
    }
    assert all(set(r) == {"id", "passed", "reason"} for r in a["rules"])
