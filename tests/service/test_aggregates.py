"""Purpose limitation and aggregate releases (the DfE nationality and GLA map cases)."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from safehaven.cli import app
from safehaven.domain.decision import Outcome, decide, decide_aggregate
from safehaven.domain.request import RequestFormatError, parse_aggregate_request
from safehaven.service.aggregates import answer_aggregate
from safehaven.store.db import transaction
from safehaven.store.models import LedgerEntryRow
from tests.builders import DFE_TRACE, body, req

AT = datetime(2017, 3, 1, 12, tzinfo=UTC)

GLA = {
    "format": "safehaven.aggregate/v1",
    "requester": "home-office",
    "agreement": "gla-home-office-outreach-map",
    "purpose": "enforcement-targeting",
    "made_on": "2017-03-01",
    "dimensions": ["area", "nationality_group"],
}


def agg(**changes):
    return parse_aggregate_request(json.dumps({**GLA, **changes}))


def outreach(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """Synthetic outreach records: skewed areas so that some cells are small."""
    rnd = random.Random(seed)
    areas = ["E1 6AN", "N1 9GU", "SE1 7PB", "W2 1HB", "NW1 2DB", "SW9 8EH", "E17 4PP"]
    weights = [40, 25, 15, 8, 6, 4, 2]
    nat = ["GB", "PL", "RO", "refused", "", "ER"]
    return pd.DataFrame(
        {
            "postcode": rnd.choices(areas, weights, k=n),
            "nationality": rnd.choices(nat, [50, 15, 10, 8, 5, 12], k=n),
            "latitude": [51.5 + rnd.random() / 10 for _ in range(n)],
            "longitude": [-0.1 + rnd.random() / 10 for _ in range(n)],
        }
    )


def rule(decision, rule_id):
    return next(r for r in decision.rules if r.id == rule_id)


def test_dfe_nationality_refused_by_purpose_limitation_even_with_firewall_off(agreements):
    request = req(
        body(
            DFE_TRACE,
            agreement="dfe-home-office-2016-draft",
            made_on="2016-09-20",
            fields=["address", "nationality", "country_of_birth"],
        )
    )
    d = decide(request, agreements, received_on=date(2016, 9, 20), firewall_on=False)
    assert d.outcome is Outcome.REFUSED
    assert [r.id for r in d.failed] == ["purpose.limitation"]
    reason = rule(d, "purpose.limitation").reason
    assert "nationality (collected for education-statistics)" in reason
    assert "country_of_birth" in reason and "address" not in reason.split(":", 2)[-1]
    # Without the nationality fields the same agreement passes that rule.
    ok = decide(
        req(
            body(
                DFE_TRACE,
                agreement="dfe-home-office-2016-draft",
                made_on="2016-09-20",
                fields=["address"],
            )
        ),
        agreements,
        received_on=date(2016, 9, 20),
        firewall_on=False,
    )
    assert rule(ok, "purpose.limitation").passed and ok.outcome is Outcome.NEEDS_REVIEW


def test_purpose_limitation_without_a_register_profile_refuses(agreements):
    from safehaven.domain.decision import AgreementSet

    bare = AgreementSet.of(agreements.agreements.values())  # no profiles loaded
    d = decide(req(DFE_TRACE), bare, received_on=date(2016, 11, 3), firewall_on=False)
    assert [r.id for r in d.failed] == ["purpose.limitation"]
    assert "no register profile" in rule(d, "purpose.limitation").reason


def test_gla_map_refused_by_firewall(agreements):
    d = decide_aggregate(agg(), agreements, received_on=AT.date(), firewall_on=True)
    assert d.outcome is Outcome.REFUSED
    assert [r.id for r in d.failed] == ["firewall.no-enforcement-targeting"]


def test_point_locations_and_unpermitted_dimensions_refused(agreements):
    for dims, word in (
        (["latitude"], "point locations"),
        (["postcode"], "point locations"),
        (["age_band"], "not permitted"),
    ):
        d = decide_aggregate(
            agg(dimensions=dims), agreements, received_on=AT.date(), firewall_on=False
        )
        assert "aggregate.dimensions" in [r.id for r in d.failed]
        assert word in rule(d, "aggregate.dimensions").reason


def test_aggregate_needs_a_purpose_that_permits_it(agreements):
    d = decide_aggregate(
        agg(
            agreement="nhs-police-tracing",
            requester="metropolitan-police",
            purpose="police-serious-crime",
        ),
        agreements,
        received_on=AT.date(),
        firewall_on=False,
    )
    assert "aggregate.permitted" in [r.id for r in d.failed]


def test_aggregate_request_format_errors_name_fields():
    for change, field in (
        ({"dimensions": []}, "dimensions"),
        ({"dimensions": ["area", "area"]}, "dimensions"),
        ({"purpose": "snooping"}, "purpose"),
        ({"format": "v2"}, "format"),
        ({"made_on": "March 2017"}, "made_on"),
    ):
        with pytest.raises(RequestFormatError) as info:
            agg(**change)
        assert any(p.startswith(field) for p in info.value.problems), info.value.problems


def test_gla_map_with_firewall_off_releases_only_protected_cells(factory, agreements):
    data = outreach()
    with transaction(factory) as s:
        held = answer_aggregate(s, agg(), agreements, data, received_at=AT, firewall_on=False)
    assert held.decision.outcome is Outcome.NEEDS_REVIEW and not held.released
    assert held.table is None
    with transaction(factory) as s:
        result = answer_aggregate(
            s, agg(), agreements, data, received_at=AT, reviewed_by="reviewer-1", firewall_on=False
        )
    assert result.released
    table = result.table
    published = [v for row in table["rows"] for v in [*row["cells"].values(), row["total"]]]
    published += [*table["column_totals"].values(), table["total"]]
    assert all(v == "suppressed" or v == 0 or v >= 10 for v in published)
    assert table["suppressed_cells"] > 0, "the synthetic data has small cells"
    assert table["total"] == len(data)
    assert all(" " not in row["label"] for row in table["rows"])  # districts, not full postcodes
    text = json.dumps(table)
    assert "51.5" not in text and "latitude" not in text
    with transaction(factory) as s:
        entries = [json.loads(e) for e in s.execute(select(LedgerEntryRow.event)).scalars()]
    kinds = [e["event"]["type"] for e in entries]
    assert kinds.count("aggregate.release") == 1 and kinds.count("aggregate.refusal") == 1
    release = next(e["event"] for e in entries if e["event"]["type"] == "aggregate.release")
    assert release["reviewed_by"] == "reviewer-1" and len(release["table_sha256"]) == 64


def test_aggregate_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFEHAVEN_HOME", str(tmp_path / "home"))
    data = tmp_path / "outreach.csv"
    outreach().to_csv(data, index=False)
    request = tmp_path / "agg.json"
    request.write_text(json.dumps(GLA))
    runner = CliRunner()
    refused = runner.invoke(app, ["aggregate", str(request), "--data", str(data)])
    assert refused.exit_code == 0
    out = json.loads(refused.stdout)
    assert out["released"] is False and out["table"] is None
    assert out["decision"]["refused_by"] == ["firewall.no-enforcement-targeting"]
    assert runner.invoke(app, ["firewall", "off", "--reason", "test"]).exit_code == 0
    released = runner.invoke(
        app,
        ["aggregate", str(request), "--data", str(data), "--reviewed-by", "rev", "--format", "csv"],
    )
    assert released.exit_code == 0, released.output
    lines = released.stdout.splitlines()
    assert lines[0].startswith("area,") and lines[-1].startswith("total,")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**GLA, "dimensions": "area"}))
    res = runner.invoke(app, ["aggregate", str(bad), "--data", str(data)])
    assert res.exit_code == 2 and "dimensions" in res.output
