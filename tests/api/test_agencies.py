"""Agencies over HTTP: submit, idempotency, scoping, polling, bulk files, status checks."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from safehaven.store.db import transaction
from safehaven.store.models import RequestRow
from tests.api.conftest import POLICE_NHS, World, bearer
from tests.builders import POLICE, STATUS, body


def test_submit_is_decided_and_durable(world: World) -> None:
    r = world.clients["agency_a"].post("/v1/requests", json=POLICE)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["state"] == "in_review" and out["outcome"] == "needs_review"
    assert r.headers["location"] == f"/v1/requests/{out['id']}"
    assert any(rule["id"] == "grounds.offence_age" for rule in out["decision"]["rules"])
    # Committed before the 201: a separate connection sees it.
    with transaction(world.cfg.factory) as s:
        assert s.scalar(select(func.count()).select_from(RequestRow)) == 1


def test_requester_defaults_to_the_token_agency(world: World) -> None:
    r = world.clients["agency_a"].post("/v1/requests", json=body(POLICE, requester=None))
    assert r.status_code == 201, r.text


def test_idempotency_same_body_same_result_different_body_409(world: World) -> None:
    a = world.clients["agency_a"]
    first = a.post("/v1/requests", json={**POLICE, "request_id": "met-1"})
    again = a.post("/v1/requests", json={**POLICE, "request_id": "met-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    clash = a.post("/v1/requests", json={**POLICE, "request_id": "met-1", "made_on": "2017-08-30"})
    assert clash.status_code == 409
    assert clash.json()["problems"][0].startswith("request_id:")


def test_scope_requester_and_agreement(world: World) -> None:
    a = world.clients["agency_a"]
    r = a.post("/v1/requests", json={**POLICE, "requester": "west-midlands-police"})
    assert r.status_code == 403 and r.json()["error"].startswith("requester:")
    r = a.post("/v1/requests", json={**STATUS, "requester": "metropolitan-police"})
    assert r.status_code == 403 and r.json()["error"].startswith("agreement:")


def test_poll_only_own_requests_and_list_only_own(world: World) -> None:
    rid = world.clients["agency_a"].post("/v1/requests", json=POLICE).json()["id"]
    world.clients["agency_b"].post("/v1/requests", json=body(POLICE, requester=None))
    assert world.clients["agency_a"].get(f"/v1/requests/{rid}").status_code == 200
    assert world.clients["agency_b"].get(f"/v1/requests/{rid}").status_code == 404
    assert world.clients["agency_b"].get("/v1/requests/no-such-id").status_code == 404
    mine = world.clients["agency_a"].get("/v1/requests").json()["requests"]
    assert [m["id"] for m in mine] == [rid]
    theirs = world.clients["agency_b"].get("/v1/requests").json()["requests"]
    assert len(theirs) == 1 and theirs[0]["requester"] == "west-midlands-police"


def test_revoked_token_is_refused(world: World) -> None:
    from safehaven.service import accounts
    from safehaven.service.clock import utcnow

    with transaction(world.cfg.factory) as s:
        principal = accounts.authenticate_agency(s, world.tokens["agency_a"])
        assert principal is not None
        accounts.revoke_agency_token(s, principal.token_id, at=utcnow())
    r = world.clients["agency_a"].post("/v1/requests", json=POLICE)
    assert r.status_code == 401
    r = world.clients["anonymous"].get("/v1/requests", headers=bearer("sh_forged"))
    assert r.status_code == 401


def test_bad_input_names_the_field(world: World) -> None:
    a = world.clients["agency_a"]
    r = a.post("/v1/requests", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "malformed JSON" in r.json()["problems"][0]
    r = a.post("/v1/requests", content=json.dumps(POLICE), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["problems"][0].startswith("Content-Type:")
    r = a.post("/v1/requests", json={**POLICE, "colour": "blue"})
    assert r.status_code == 422 and r.json()["problems"] == [
        "colour: unknown field (not part of request format v1)"]
    r = a.post("/v1/requests", json=body(POLICE, made_on="01/09/2017"))
    assert r.status_code == 422 and r.json()["problems"][0].startswith("made_on:")
    r = a.post("/v1/requests", json=body(POLICE, subject__family=None))
    assert r.json()["problems"] == ["subject.family: required field is missing"]
    r = a.post("/v1/requests", json=[POLICE])
    assert r.status_code == 422 and r.json()["problems"] == ["(body): must be a JSON object"]
    big = {**POLICE, "grounds": {**POLICE["grounds"], "offence": "x" * 70_000}}
    r = a.post("/v1/requests", json=big)
    assert r.status_code == 413 and r.json()["problems"][0].startswith("(body)")
    with transaction(world.cfg.factory) as s:
        assert s.scalar(select(func.count()).select_from(RequestRow)) == 0


def _lines(response) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in response.text.splitlines()]


def test_bulk_json_lines_per_row_results(world: World) -> None:
    rows = [
        {**POLICE, "request_id": "b-1"},
        {**POLICE, "request_id": "b-1"},  # same key, same body: replay
        {**POLICE, "request_id": "b-1", "made_on": "2017-08-01"},  # same key, new body
        {**POLICE, "request_id": "b-2", "made_on": "2017-13-01"},
        {**STATUS, "requester": "metropolitan-police"},
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n[1]\n{bad\n"
    r = world.clients["agency_a"].post(
        "/v1/requests/bulk", content=text, headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    lines = _lines(r)
    assert [x.get("status") for x in lines[:-1]] == [201, 200, 409, 422, 403, 422, 422]
    assert lines[1]["id"] == lines[0]["id"]
    assert lines[3]["problems"][0].startswith("made_on:")
    assert lines[-1] == {"summary": {"rows": 7, "created": 1, "replayed": 1, "rejected": 5}}


def test_bulk_csv(world: World) -> None:
    header = ("request_id,agreement,purpose,made_on,subject.family,subject.given,"
              "subject.birthdate,grounds.offence,grounds.offence_date,grounds.serious_crime,fields")
    good = ("c-1,nhs-police-tracing,police-serious-crime,2017-09-01,Testsuspect,Jo,1975-02-14,"
            "Rape,2016-02-20,true,address;address-postalcode")
    bad_bool = good.replace("c-1", "c-2").replace(",true,", ",yes,")
    r = world.clients["agency_a"].post(
        "/v1/requests/bulk", content="\n".join([header, good, bad_bool]) + "\n",
        headers={"Content-Type": "text/csv"})
    lines = _lines(r)
    assert lines[0]["status"] == 201 and lines[0]["state"] == "in_review"
    assert lines[1] == {"row": 2, "status": 422,
                        "problems": ["grounds.serious_crime: must be true or false"]}
    r = world.clients["agency_a"].post(
        "/v1/requests/bulk", content="request_id,shoe_size\nx,9\n",
        headers={"Content-Type": "text/csv"})
    assert r.status_code == 422 and r.json()["problems"][0].startswith("(header).shoe_size")


def test_bulk_limits(world: World) -> None:
    line = json.dumps(POLICE) + "\n"
    r = world.clients["agency_a"].post(
        "/v1/requests/bulk", content=line * 10_001,
        headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 413 and "10000 rows" in r.json()["problems"][0]
    r = world.clients["agency_a"].post(
        "/v1/requests/bulk", content=line, headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    r = world.clients["agency_a"].post(
        "/v1/requests/bulk", content="\n\n", headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 422
    with transaction(world.cfg.factory) as s:
        assert s.scalar(select(func.count()).select_from(RequestRow)) == 0


def test_bulk_oversized_file(world_factory) -> None:  # type: ignore[no-untyped-def]
    w = world_factory(max_bulk_bytes=10_000)
    r = w.clients["agency_a"].post(
        "/v1/requests/bulk", content=(json.dumps(POLICE) + "\n") * 40,
        headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 413 and "10000 bytes" in r.json()["problems"][0]


def test_status_check_answers_entitlement_only(world: World) -> None:
    d = world.clients["dvla"]
    r = d.post("/v1/status-checks", json=STATUS)
    assert r.status_code == 201, r.text
    assert r.json()["answer"] == "not_entitled" and r.json()["state"] == "notified"
    assert set(r.json()) == {"id", "request_id", "state", "answer"}
    polled = d.get(f"/v1/requests/{r.json()['id']}").json()
    assert polled["disclosure"]["fields"] == {"entitlement": "not_entitled"}
    assert "Test Road" not in json.dumps(polled)
    unknown = d.post("/v1/status-checks",
                     json=body(STATUS, subject__family="Nobody")).json()
    assert unknown["answer"] == "unknown" and unknown["state"] == "no_match"
    asks_address = d.post("/v1/status-checks", json=body(STATUS, fields=["address"]))
    assert asks_address.status_code == 422
    assert asks_address.json()["problems"] == [
        "fields: a status check asks for ['entitlement'] only"]
    # Through the general endpoint the engine refuses it: address is forbidden.
    refused = d.post("/v1/requests", json=body(STATUS, fields=["entitlement", "address"]))
    assert refused.json()["outcome"] == "refused"
    assert "fields.forbidden" in refused.json()["decision"]["refused_by"]


def test_police_request_naming_nhs_number_is_linked_for_the_subject(world: World) -> None:
    r = world.clients["agency_a"].post("/v1/requests", json=POLICE_NHS)
    assert r.status_code == 201
