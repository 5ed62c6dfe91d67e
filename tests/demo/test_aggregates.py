"""The demo's aggregate part: synthetic controller datasets and the replayed requests for counts.

The last test runs ``safehaven demo`` (small: 2,000 people, 1 % of the rates) in a fresh
workspace and then asks the real app, over that workspace, for counts as an agency would:
the datasets the demo wrote are what ``POST /v1/aggregates`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from safehaven.agreements import load_dir
from safehaven.api.app import create_app
from safehaven.api.context import ApiConfig
from safehaven.cli import app as cli
from safehaven.demo.aggregates import (
    MARKER,
    DatasetConflictError,
    synth_dataset,
    write_datasets,
)
from safehaven.demo.parameters import load_parameters
from safehaven.domain.decision import decide_aggregate
from safehaven.domain.request import parse_aggregate_request
from safehaven.service import accounts
from safehaven.service import aggregates as svc
from safehaven.store.db import open_store, transaction
from tests.api.aggregate_support import published_values

#: Columns a breakdown reads, and the outreach points no release may include.
ALLOWED_COLUMNS = {"postcode", "gender", "birthdate", "nationality", "registered_on",
                   "latitude", "longitude"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAFEHAVEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SAFEHAVEN_DATABASE_URL", raising=False)
    return tmp_path / "home"


def test_datasets_are_synthetic_deterministic_and_as_parameterised() -> None:
    params = load_parameters()
    for spec in params.datasets:
        data = synth_dataset(spec, params.seed)
        assert len(data) == spec.records
        assert set(data.columns) <= ALLOWED_COLUMNS, "no name, number or other identifier"
        pd.testing.assert_frame_equal(data, synth_dataset(spec, params.seed))
        assert not data.equals(synth_dataset(spec, params.seed + 1))
        assert set(data["postcode"].str.split().str[0]) <= set(spec.areas)
        answers = data["nationality"]
        shares = spec.nationality
        assert abs((answers == "refused").mean() - shares.refused) < 0.015
        assert abs((answers == "").mean() - shares.not_obtained) < 0.03
        non_uk = ~answers.isin(["refused", "", "GB"])
        assert abs(non_uk.mean() - shares.non_uk) < 0.03
        assert set(answers[non_uk]) <= set(shares.non_uk_values)
        ages = (pd.Timestamp(spec.ages_on) - pd.to_datetime(data["birthdate"])).dt.days / 365.25
        assert ages.min() >= spec.age_years[0] and ages.max() < spec.age_years[1] + 1
        assert ("latitude" in data.columns) == spec.point_locations


def test_the_school_census_counts_refused_as_its_own_group() -> None:
    """Seed 004 ¶37: "refused" is an answer, kept and counted, never imputed."""
    params = load_parameters()
    spec = next(s for s in params.datasets if s.controller == "dfe")
    data = synth_dataset(spec, params.seed)
    groups = svc.dimension_values(data, "nationality_group", spec.ages_on)
    assert set(groups) == {"UK", "non-UK", "refused", "not known"}


def test_write_datasets_never_replaces_a_controllers_own_file(tmp_path: Path) -> None:
    params = load_parameters()
    directory = tmp_path / "datasets"
    directory.mkdir()
    real = directory / "gla.csv"
    real.write_text("postcode,nationality\nE1 6AN,GB\n")
    with pytest.raises(DatasetConflictError, match=r"gla\.csv"):
        write_datasets(params, directory)
    assert sorted(p.name for p in directory.iterdir()) == ["gla.csv"]  # nothing written
    real.unlink()
    written = write_datasets(params, directory)
    assert set(written) == {"dfe", "gla"}
    assert (directory / MARKER).read_text().count(".parquet") == 2
    first = {k: p.read_bytes() for k, p in written.items()}
    # A second demo replaces its own files, with the same contents.
    again = write_datasets(params, directory)
    assert {k: p.read_bytes() for k, p in again.items()} == first


@pytest.fixture
def demo_workspace(home: Path) -> Iterator[dict[str, Any]]:
    res = CliRunner().invoke(cli, ["demo", "--no-serve", "--json", "--people", "2000",
                                   "--scale", "0.01"])
    assert res.exit_code == 0, res.output
    engine = open_store(None)
    yield {"summary": json.loads(res.stdout), "engine": engine}
    engine.dispose()


def test_demo_writes_datasets_and_aggregate_requests_answer_in_its_workspace(
    home: Path, demo_workspace: dict[str, Any]
) -> None:
    params = load_parameters()
    datasets = home / "datasets"
    assert {p.name for p in datasets.iterdir()} == {"dfe.parquet", "gla.parquet", MARKER}
    for spec in params.datasets:
        pd.testing.assert_frame_equal(pd.read_parquet(datasets / f"{spec.controller}.parquet"),
                                      synth_dataset(spec, params.seed))

    # The replayed cases, as the demo printed them.
    cases = {c["case"]: c for c in demo_workspace["summary"]["aggregates"]}
    assert list(cases) == [c.id for c in params.aggregates]
    assert cases["gla-map"]["state"] == "refused"
    assert cases["gla-map"]["refused_by"] == ["firewall.no-enforcement-targeting"]
    assert cases["ons-census"]["state"] == "released"
    assert cases["ons-census"]["suppressed_cells"] > 0
    assert cases["outreach-gender"]["state"] == "released"
    assert cases["outreach-gender"]["reviewers"] == ["reviewer-a", "reviewer-c"]
    assert cases["outreach-age-nationality"]["state"] == "refused"
    assert cases["outreach-age-nationality"]["reviewers"] == ["reviewer-b"]
    assert cases["outreach-nationality"]["state"] == "in_review"
    doc = (Path(__file__).resolve().parents[2] / "docs" / "demo.md").read_text()
    assert f"({cases['ons-census']['suppressed_cells']} values hidden" in doc

    cfg = ApiConfig(engine=demo_workspace["engine"], agreements=load_dir())
    # The stored census table is the one the seed's records give: deterministic.
    ons_case = next(c for c in params.aggregates if c.id == "ons-census")
    request = parse_aggregate_request(json.dumps(ons_case.request))
    with transaction(cfg.reader) as s:
        stored = svc.get_release(s, cases["ons-census"]["release"]).protected_table
    census = synth_dataset(next(d for d in params.datasets if d.controller == "dfe"),
                           params.seed)
    decision = decide_aggregate(request, cfg.agreements, received_on=request.made_on)
    assert stored == svc.protected_table(request, decision, cfg.agreements, census)

    # An agency asks the app over the demo workspace: the demo's records answer.
    with transaction(cfg.factory) as s:
        token, _ = accounts.create_agency_token(s, cfg.agreements, "ons", scope=None,
                                                label="test", at=datetime.now(UTC))
    api = create_app(cfg)
    with TestClient(api, headers={"Authorization": f"Bearer {token}"}) as ons:
        r = ons.post("/v1/aggregates", json={
            "format": "safehaven.aggregate/v1", "agreement": "dfe-school-census-statistics",
            "purpose": "aggregate-statistics", "made_on": "2018-06-01",
            "dimensions": ["age_band", "gender"]})
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["state"] == "released" and out["table"]["total"] == len(census)
        assert all(v == "suppressed" or v == 0 or v >= 10
                   for v in published_values(out["table"]))

    # The held release is on the reviewer desk for the demo's reviewers.
    with TestClient(api) as desk:
        login = desk.post("/review/login", data={"username": "reviewer-a",
                                                 "password": "safehaven-demo-reviewer-a"},
                          follow_redirects=False)
        assert login.status_code == 303
        queue = desk.get("/review").text
        assert f'href="/review/aggregates/{cases["outreach-nationality"]["release"]}"' in queue
        for done in ("gla-map", "ons-census", "outreach-gender"):
            assert cases[done]["release"] not in queue
