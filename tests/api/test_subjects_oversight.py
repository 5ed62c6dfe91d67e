"""The subject portal (code login, what a person sees) and oversight (heads, proofs, stats)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from safehaven.ledger import merkle
from tests.api.conftest import APPLICANT_NHS, POLICE_NHS, SUSPECT_NHS, World, subject_login
from tests.builders import POLICE, STATUS, body


def test_code_login_rules(world: World) -> None:
    c = world.client()
    send = {"nhs_number": APPLICANT_NHS, "birthdate": "1992-07-30"}
    bad_nhs = c.post("/v1/subject/code", json={**send, "nhs_number": "1234567890"})
    assert bad_nhs.status_code == 422 and bad_nhs.json()["problems"][0].startswith("nhs_number:")
    assert c.post("/v1/subject/code", json=send).status_code == 202
    code = world.outbox("access_code")[-1].body.split("code is ")[1][:6]
    wrong_day = {**send, "birthdate": "1992-07-31", "code": code}
    assert c.post("/v1/subject/session", json=wrong_day).status_code == 401
    assert c.post("/v1/subject/session", json={**send, "code": code}).status_code == 200
    # A code works once.
    assert world.client().post("/v1/subject/session",
                               json={**send, "code": code}).status_code == 401
    for _ in range(3):
        c.post("/v1/subject/code", json=send)
    assert c.post("/v1/subject/code", json=send).status_code == 429


def test_guessing_is_capped(world: World) -> None:
    c = world.client()
    send = {"nhs_number": APPLICANT_NHS, "birthdate": "1992-07-30"}
    c.post("/v1/subject/code", json=send)
    code = world.outbox("access_code")[-1].body.split("code is ")[1][:6]
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        assert c.post("/v1/subject/session", json={**send, "code": wrong}).status_code == 401
    assert c.post("/v1/subject/session", json={**send, "code": code}).status_code == 401


def test_subject_sees_finished_requests_but_not_exempted_or_pending(world: World) -> None:
    a = world.clients["agency_a"]
    told = a.post("/v1/requests", json={**POLICE_NHS, "fields": ["address"]}).json()["id"]
    world.post("reviewer", f"/v1/review/requests/{told}/verdict",
               json={"verdict": "approve", "reason": "ok"})
    hidden = a.post("/v1/requests", json={**POLICE_NHS, "request_id": "h"}).json()["id"]
    today = world.cfg.clock().date()
    world.post("reviewer", f"/v1/review/requests/{hidden}/verdict", json={
        "verdict": "approve", "reason": "ok", "exemption": {
            "exemption_id": "prejudice-crime-prevention", "reason": "would flee",
            "review_on": str(today + timedelta(days=10))}})
    pending = a.post("/v1/requests", json={**POLICE_NHS, "request_id": "p"}).json()["id"]
    old = a.post("/v1/requests", json=body(POLICE_NHS, request_id="o",
                                           grounds__offence_date="2001-01-01")).json()
    assert old["state"] == "refused"
    mine = world.clients["subject"].get("/v1/subject/requests").json()["requests"]
    ids = [m["id"] for m in mine]
    assert told in ids and old["id"] in ids and hidden not in ids and pending not in ids
    shown = next(m for m in mine if m["id"] == told)
    assert shown["requester"]["name"] == "Metropolitan Police Service"
    assert shown["fields_given"] == {"address": "1 Test Street, Leeds"}
    assert shown["outcome"] == "notified"
    refused = next(m for m in mine if m["id"] == old["id"])
    assert "grounds.offence_age" in refused["refused_by"] and refused["fields_given"] == {}
    # Someone else sees none of it.
    other = world.client()
    subject_login(world, other, APPLICANT_NHS, "1992-07-30")
    assert other.get("/v1/subject/requests").json()["requests"] == []
    assert SUSPECT_NHS not in other.get("/v1/subject/requests").text


def test_status_check_subject_is_notified(world: World) -> None:
    world.clients["dvla"].post("/v1/status-checks", json=STATUS)
    letters = world.outbox("disclosure_notice")
    assert len(letters) == 1 and "whether you are entitled" in letters[0].body
    c = world.client()
    subject_login(world, c, APPLICANT_NHS, "1992-07-30")
    (seen,) = c.get("/v1/subject/requests").json()["requests"]
    assert seen["requester"]["name"] == "Driver and Vehicle Licensing Agency"
    assert seen["fields_given"] == {"entitlement": "not_entitled"}


def test_oversight_head_and_proofs_verify(world: World) -> None:
    world.clients["agency_a"].post("/v1/requests", json=POLICE)
    o = world.clients["oversight"]
    head = o.get("/v1/oversight/ledger/head").json()
    assert head["size"] == 3  # received, decided, in_review
    key = load_pem_public_key(head["public_key_pem"].encode())
    from safehaven.ledger.heads import TreeHead, verify_head

    assert verify_head(TreeHead.from_json(head), key)  # type: ignore[arg-type]
    proof = o.get("/v1/oversight/ledger/proofs/inclusion?index=1&size=3").json()
    root = bytes.fromhex(head["root"]) if len(head["root"]) == 64 else base64.b64decode(
        head["root"])
    assert merkle.verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]), 1, 3, [bytes.fromhex(h) for h in proof["proof"]], root)
    assert json.loads(proof["entry"])["event"]["to"] == "decided"
    too_big = o.get("/v1/oversight/ledger/proofs/inclusion?index=0&size=99")
    assert too_big.status_code == 422 and too_big.json()["problems"][0].startswith("size:")
    bad = o.get("/v1/oversight/ledger/proofs/consistency?first=3&second=2")
    assert bad.status_code == 422
    assert o.get("/v1/oversight/ledger/proofs/consistency?first=1&second=3").status_code == 200


def test_oversight_statistics(world: World) -> None:
    world.clients["agency_a"].post("/v1/requests", json=POLICE)
    world.clients["dvla"].post("/v1/status-checks", json=STATUS)
    stats = world.clients["oversight"].get("/v1/oversight/statistics").json()
    assert "nhs-police-tracing" in json.dumps(stats)
    r = world.clients["oversight"].get("/v1/oversight/statistics?from=2020-01-02&to=2020-01-01")
    assert r.status_code == 422 and r.json()["problems"][0].startswith("from:")


def test_reviewer_verdict_is_a_ledger_entry_without_the_reason(world: World) -> None:
    rid = world.clients["agency_a"].post("/v1/requests", json=POLICE).json()["id"]
    reason = "Offence is serious and recent"
    world.post("reviewer", f"/v1/review/requests/{rid}/verdict",
               json={"verdict": "refuse", "reason": reason})
    o = world.clients["oversight"]
    size = o.get("/v1/oversight/ledger/head").json()["size"]
    last = o.get(f"/v1/oversight/ledger/proofs/inclusion?index={size - 1}&size={size}").json()
    event = json.loads(last["entry"])["event"]
    assert (event["request"], event["actor"], event["to"]) == (rid, "alice", "refused")
    assert event["detail"]["verdict"] == "refuse" and "reason_sha256" in event["detail"]
    assert reason not in last["entry"]
