"""Aggregate releases over HTTP: decision and protected table, CSV, review, idempotency.

Runs on SQLite and PostgreSQL (the ``engine`` fixture).  Agency A and B are police forces
that may ask the GLA for counts under two test agreements (no review; four-eyes); the
Home Office asks for the bundled GLA map, which the firewall refuses.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from safehaven.domain.canonical import content_hash
from safehaven.domain.decision import AgreementSet
from safehaven.service import accounts, settings
from safehaven.store.aggregates import AggregateReleaseRow
from safehaven.store.db import transaction
from safehaven.store.models import LedgerEntryRow
from tests.api.aggregate_support import (
    GLA_MAP,
    STATS_REQUEST,
    STATS_TWO,
    outreach,
    published_values,
    with_statistics_agreements,
)
from tests.api.conftest import World, bearer

DATA = outreach()


@pytest.fixture
def agreements(agreements: AgreementSet) -> AgreementSet:
    return with_statistics_agreements(agreements)


@pytest.fixture
def world(world_factory: Callable[..., World]) -> World:
    return world_factory(datasets={"gla": DATA})


def home_office(world: World) -> TestClient:
    with transaction(world.cfg.factory) as s:
        token, _ = accounts.create_agency_token(
            s, world.cfg.agreements, "home-office", scope=None, label="test",
            at=datetime.now(UTC))
    client = TestClient(world.app, headers=bearer(token))
    return client


def firewall_off(world: World) -> None:
    with transaction(world.cfg.factory) as s:
        settings.set_firewall(s, False, actor="controller", reason="aggregate test")


def ledger(world: World) -> list[dict[str, Any]]:
    with transaction(world.cfg.factory) as s:
        rows = s.execute(select(LedgerEntryRow.event).order_by(LedgerEntryRow.idx)).scalars()
        return [json.loads(e)["event"] for e in rows]


def releases_stored(world: World) -> int:
    with transaction(world.cfg.factory) as s:
        return int(s.execute(select(func.count()).select_from(AggregateReleaseRow)).scalar_one())


def assert_protected(table: dict[str, Any]) -> None:
    values = published_values(table)
    assert all(v == "suppressed" or v == 0 or v >= 10 for v in values), values
    assert table["suppressed_cells"] > 0, "the synthetic data has small cells"


def test_released_table_is_protected_explained_and_durable(world: World) -> None:
    r = world.clients["agency_a"].post("/v1/aggregates", json=STATS_REQUEST)
    assert r.status_code == 201, r.text
    out = r.json()
    assert r.headers["location"] == f"/v1/aggregates/{out['id']}"
    assert out["state"] == "released" and out["released"] is True
    assert out["requester"] == "metropolitan-police" and out["request_id"] == "agg-1"
    rules = out["decision"]["rules"]
    assert {"aggregate.permitted", "aggregate.dimensions", "purpose.limitation",
            "firewall", "review.required"} <= {x["id"] for x in rules}
    assert all(x["passed"] and x["reason"] for x in rules)
    table = out["table"]
    assert table["dimensions"] == ["area", "nationality_group"]
    assert_protected(table)
    assert table["total"] == len(DATA)
    assert all(" " not in row["label"] for row in table["rows"])  # districts, not postcodes
    for point in ("51.5", "latitude", "longitude", "E1 6AN"):
        assert point not in r.text
    # Durable before the answer: the row and its ledger entry are committed.
    assert releases_stored(world) == 1
    entry = [e for e in ledger(world) if e["type"].startswith("aggregate.")]
    assert [e["type"] for e in entry] == ["aggregate.release"]
    assert entry[0]["release"] == out["id"]
    assert entry[0]["table_sha256"] == out["table_sha256"] == content_hash(table)
    # Fetched again: the same table.
    again = world.clients["agency_a"].get(f"/v1/aggregates/{out['id']}")
    assert again.status_code == 200 and again.json()["table"] == table
    listed = world.clients["agency_a"].get("/v1/aggregates").json()["releases"]
    assert [x["id"] for x in listed] == [out["id"]]


def test_gla_map_refused_by_firewall_over_http(world: World) -> None:
    ho = home_office(world)
    r = ho.post("/v1/aggregates", json=GLA_MAP, headers={"Accept": "text/csv"})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/json")  # nothing to tabulate
    out = r.json()
    assert out["state"] == "refused" and out["released"] is False and out["table"] is None
    assert out["decision"]["refused_by"] == ["firewall.no-enforcement-targeting"]
    reason = next(x for x in out["decision"]["rules"]
                  if x["id"] == "firewall.no-enforcement-targeting")["reason"]
    assert reason
    assert [e["type"] for e in ledger(world)] == ["aggregate.refusal"]
    csv_again = ho.get(f"/v1/aggregates/{out['id']}?format=csv")
    assert csv_again.status_code == 409
    assert csv_again.json()["problems"][0].startswith("format:")
    # A point location is refused as a breakdown, whatever the firewall says.
    firewall_off(world)
    r = ho.post("/v1/aggregates", json={**GLA_MAP, "dimensions": ["latitude"]})
    assert r.status_code == 201 and r.json()["state"] == "refused"
    assert "aggregate.dimensions" in r.json()["decision"]["refused_by"]


def test_gla_map_with_firewall_off_is_held_reviewed_then_released(world: World) -> None:
    firewall_off(world)
    ho = home_office(world)
    r = ho.post("/v1/aggregates", json=GLA_MAP)
    assert r.status_code == 201, r.text
    held = r.json()
    assert held["state"] == "in_review" and held["table"] is None
    assert held["approvals_needed"] == 1
    # The agency cannot see the table before a reviewer has approved it.
    assert "suppressed" not in ho.get(f"/v1/aggregates/{held['id']}").text
    queue = world.clients["reviewer"].get("/v1/review/aggregates").json()["releases"]
    assert [q["id"] for q in queue] == [held["id"]]
    assert queue[0]["body"]["purpose"] == "enforcement-targeting"
    assert_protected(queue[0]["table"])
    path = f"/v1/review/aggregates/{held['id']}/verdict"
    no_csrf = world.clients["reviewer"].post(path, json={"verdict": "approve", "reason": "ok"})
    assert no_csrf.status_code == 403
    blank = world.post("reviewer", path, json={"verdict": "approve", "reason": " "})
    assert blank.status_code == 422 and blank.json()["problems"][0].startswith("reason:")
    ok = world.post("reviewer", path, json={"verdict": "approve", "reason": "firewall off"})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"id": held["id"], "state": "released", "approvals_needed": 0}
    assert world.post("reviewer_2", path, json={"verdict": "approve",
                                                "reason": "late"}).status_code == 409
    released = ho.get(f"/v1/aggregates/{held['id']}").json()
    assert released["state"] == "released"
    assert_protected(released["table"])
    assert "51.5" not in json.dumps(released)
    assert released["table"] == queue[0]["table"]  # exactly what the reviewer saw
    events = [e for e in ledger(world) if e["type"].startswith("aggregate.")]
    assert [e["type"] for e in events] == ["aggregate.held", "aggregate.review",
                                           "aggregate.release"]
    assert events[0]["table_sha256"] == events[2]["table_sha256"]
    assert events[1]["reviewer"] == "alice" and "reason" not in events[1]
    assert events[2]["reviewed_by"] == ["alice"]
    assert world.clients["reviewer"].get("/v1/review/aggregates").json()["releases"] == []


def test_four_eyes_and_refusal_by_a_reviewer(world: World) -> None:
    a = world.clients["agency_a"]
    rid = a.post("/v1/aggregates", json={**STATS_REQUEST, "agreement": STATS_TWO}).json()["id"]
    path = f"/v1/review/aggregates/{rid}/verdict"
    first = world.post("reviewer", path, json={"verdict": "approve", "reason": "fine"})
    assert first.json() == {"id": rid, "state": "in_review", "approvals_needed": 1}
    assert a.get(f"/v1/aggregates/{rid}").json()["table"] is None
    queue = world.clients["reviewer"].get("/v1/review/aggregates").json()["releases"]
    assert queue[0]["reviewed_by_me"] is True
    twice = world.post("reviewer", path, json={"verdict": "approve", "reason": "again"})
    assert twice.status_code == 409 and "different person" in twice.json()["problems"][0]
    second = world.post("reviewer_2", path, json={"verdict": "approve", "reason": "agreed"})
    assert second.json() == {"id": rid, "state": "released", "approvals_needed": 0}
    assert_protected(a.get(f"/v1/aggregates/{rid}").json()["table"])

    other = a.post("/v1/aggregates", json={**STATS_REQUEST, "request_id": "agg-2",
                                           "agreement": STATS_TWO}).json()["id"]
    no = world.post("reviewer", f"/v1/review/aggregates/{other}/verdict",
                    json={"verdict": "refuse", "reason": "breakdown too fine"})
    assert no.json() == {"id": other, "state": "refused", "approvals_needed": 0}
    shown = world.clients["reviewer"].get(f"/v1/review/aggregates/{other}").json()
    assert shown["reviews"][0]["reason"] == "breakdown too fine"
    assert a.get(f"/v1/aggregates/{other}").json()["table"] is None
    assert world.post("reviewer", "/v1/review/aggregates/nope/verdict",
                      json={"verdict": "refuse", "reason": "x"}).status_code == 404
    refusal = [e for e in ledger(world) if e["type"] == "aggregate.refusal"]
    assert refusal[-1]["refused_by_reviewer"] == "alice"
    # Oversight reads every release with its reviews, and cannot write.
    seen = world.clients["oversight"].get("/v1/oversight/aggregates").json()["releases"]
    assert {x["id"] for x in seen} == {rid, other}
    one = world.clients["oversight"].get(f"/v1/oversight/aggregates/{other}").json()
    assert one["state"] == "refused" and one["table"] is None  # refused: never shown
    assert [r["reason"] for r in one["reviews"]] == ["breakdown too fine"]
    assert world.clients["oversight"].get(
        f"/v1/oversight/aggregates/{rid}").json()["table"] == a.get(
        f"/v1/aggregates/{rid}").json()["table"]
    assert world.clients["oversight"].get("/v1/oversight/aggregates/nope").status_code == 404
    assert world.post("oversight", path, json={"verdict": "approve",
                                               "reason": "x"}).status_code == 403


def test_csv_output_marks_suppressed_cells(world: World) -> None:
    a = world.clients["agency_a"]
    r = a.post("/v1/aggregates", json=STATS_REQUEST, headers={"Accept": "text/csv"})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["location"].startswith("/v1/aggregates/")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][0] == "area" and rows[0][-1] == "total"
    assert rows[-1][0] == "total" and rows[-1][-1] == str(len(DATA))
    cells = [v for row in rows[1:] for v in row[1:]]
    assert "suppressed" in cells
    assert all(v == "suppressed" or int(v) == 0 or int(v) >= 10 for v in cells)
    rid = r.headers["location"].rsplit("/", 1)[1]
    # The same table again: by query parameter, by Accept, and JSON stays the default.
    assert a.get(f"/v1/aggregates/{rid}?format=csv").text == r.text
    assert a.get(f"/v1/aggregates/{rid}", headers={"Accept": "text/csv"}).text == r.text
    pref = a.get(f"/v1/aggregates/{rid}",
                 headers={"Accept": "application/json, text/csv;q=0.5"})
    assert pref.headers["content-type"].startswith("application/json")
    assert a.get(f"/v1/aggregates/{rid}?format=json",
                 headers={"Accept": "text/csv"}).json()["id"] == rid
    # Replay with CSV: the stored table, status 200.
    again = a.post("/v1/aggregates?format=csv", json=STATS_REQUEST)
    assert again.status_code == 200 and again.text == r.text


@pytest.mark.parametrize(("change", "field"), [
    ({"dimensions": []}, "dimensions"),
    ({"dimensions": ["area", "area"]}, "dimensions"),
    ({"dimensions": "area"}, "dimensions"),
    ({"made_on": "1 March 2017"}, "made_on"),
    ({"purpose": "snooping"}, "purpose"),
    ({"format": "safehaven.request/v1"}, "format"),
    ({"format": None}, "format"),
    ({"request_id": "has space"}, "request_id"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_input_is_a_422_naming_the_field(
    world: World, change: dict[str, Any], field: str
) -> None:
    req = {k: v for k, v in {**STATS_REQUEST, **change}.items() if v is not None}
    r = world.clients["agency_a"].post("/v1/aggregates", json=req)
    assert r.status_code == 422, r.text
    assert any(p.startswith(f"{field}:") for p in r.json()["problems"]), r.json()
    assert releases_stored(world) == 0


def test_body_type_and_scope_faults(world: World) -> None:
    a = world.clients["agency_a"]
    r = a.post("/v1/aggregates", content=b'{"format": ', headers={
        "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["problems"][0].startswith("(body):")
    r = a.post("/v1/aggregates", content=b"[]", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = a.post("/v1/aggregates", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = a.post("/v1/aggregates", json={**STATS_REQUEST, "requester": "west-midlands-police"})
    assert r.status_code == 403 and r.json()["error"].startswith("requester:")
    r = a.post("/v1/aggregates", json={**GLA_MAP, "requester": "metropolitan-police"})
    assert r.status_code == 403 and r.json()["error"].startswith("agreement:")
    assert world.clients["anonymous"].post("/v1/aggregates", json=STATS_REQUEST).status_code == 401
    assert world.clients["reviewer"].post("/v1/aggregates", json=STATS_REQUEST).status_code == 403
    assert releases_stored(world) == 0


def test_idempotent_on_request_id(world: World) -> None:
    a = world.clients["agency_a"]
    first = a.post("/v1/aggregates", json=STATS_REQUEST)
    assert first.status_code == 201
    entries = len(ledger(world))
    same = a.post("/v1/aggregates", json=STATS_REQUEST)
    assert same.status_code == 200 and same.json() == first.json()
    # requester given explicitly is the same request as requester left out.
    explicit = a.post("/v1/aggregates", json={**STATS_REQUEST, "requester": "metropolitan-police"})
    assert explicit.status_code == 200 and explicit.json()["id"] == first.json()["id"]
    different = a.post("/v1/aggregates", json={**STATS_REQUEST, "dimensions": ["area"]})
    assert different.status_code == 409
    assert different.json()["problems"][0].startswith("request_id: 'agg-1'")
    assert len(ledger(world)) == entries and releases_stored(world) == 1
    # The key is per agency: agency B may use the same one.
    b = world.clients["agency_b"].post("/v1/aggregates", json=STATS_REQUEST)
    assert b.status_code == 201 and b.json()["id"] != first.json()["id"]
    # Without a request_id nothing is deduplicated.
    keyless = {k: v for k, v in STATS_REQUEST.items() if k != "request_id"}
    ids = {a.post("/v1/aggregates", json=keyless).json()["id"] for _ in range(2)}
    assert len(ids) == 2


def test_another_agency_cannot_read_it(world: World) -> None:
    rid = world.clients["agency_a"].post("/v1/aggregates", json=STATS_REQUEST).json()["id"]
    b = world.clients["agency_b"]
    for path in (f"/v1/aggregates/{rid}", f"/v1/aggregates/{rid}?format=csv"):
        r = b.get(path)
        assert r.status_code == 404 and r.json()["error"] == "aggregate release not found"
    assert b.get("/v1/aggregates/no-such-id").status_code == 404
    assert b.get("/v1/aggregates").json() == {"releases": []}
    assert world.clients["agency_a"].get(f"/v1/aggregates/{rid}").status_code == 200


def test_no_dataset_for_the_controller_is_a_503_and_stores_nothing(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(datasets={})
    r = world.clients["agency_a"].post("/v1/aggregates", json=STATS_REQUEST)
    assert r.status_code == 503 and r.json()["problems"][0].startswith("dataset:")
    assert releases_stored(world) == 0 and ledger(world) == []
    # A refusal needs no data: it is still answered and recorded.
    ho = home_office(world)
    assert ho.post("/v1/aggregates", json=GLA_MAP).json()["state"] == "refused"
    assert releases_stored(world) == 1

