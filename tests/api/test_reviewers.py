"""Reviewers over HTTP: login, CSRF, queue, verdicts, four-eyes, notices and exemptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from safehaven.service import settings
from safehaven.store.db import transaction
from tests.api.conftest import PASSWORD, POLICE_NHS, World
from tests.builders import NHS_DEPORT, POLICE, body


def _submit(world: World, req: dict, role: str = "agency_a") -> str:  # type: ignore[type-arg]
    r = world.clients[role].post("/v1/requests", json=req)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_login_failures_and_logout(world: World) -> None:
    c = world.client()
    for name, password in (("alice", "wrong"), ("nobody", PASSWORD)):
        r = c.post("/v1/session", json={"username": name, "password": password})
        assert r.status_code == 401
    r = c.post("/v1/session", json={"username": "alice"})
    assert r.status_code == 422 and r.json()["problems"] == ["password: required field is missing"]
    r = c.post("/v1/session", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["role"] == "reviewer"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert c.delete("/v1/session").status_code == 403  # no CSRF token
    csrf = {"X-CSRF-Token": r.json()["csrf_token"]}
    assert c.delete("/v1/session", headers=csrf).status_code == 204
    assert c.get("/v1/review/queue").status_code == 401


def test_queue_shows_explanation_and_verdict_needs_csrf_and_reason(world: World) -> None:
    rid = _submit(world, POLICE_NHS)
    queue = world.clients["reviewer"].get("/v1/review/queue").json()["requests"]
    assert [q["id"] for q in queue] == [rid]
    assert queue[0]["decision"]["outcome"] == "needs_review"
    assert queue[0]["body"]["grounds"]["offence"] == "Rape"
    assert queue[0]["approvals_needed"] == 1
    path = f"/v1/review/requests/{rid}/verdict"
    no_csrf = world.clients["reviewer"].post(path, json={"verdict": "approve", "reason": "ok"})
    assert no_csrf.status_code == 403 and "X-CSRF-Token" in no_csrf.json()["error"]
    wrong = world.post("reviewer", path, json={"verdict": "approve", "reason": "ok"},
                       headers={"X-CSRF-Token": world.csrf["reviewer_2"]})
    assert wrong.status_code == 403
    blank = world.post("reviewer", path, json={"verdict": "approve", "reason": "   "})
    assert blank.status_code == 422 and blank.json()["problems"][0].startswith("reason:")
    odd = world.post("reviewer", path, json={"verdict": "maybe", "reason": "x"})
    assert odd.status_code == 422 and odd.json()["problems"][0].startswith("verdict:")
    shown = world.clients["reviewer"].get(f"/v1/review/requests/{rid}").json()
    assert shown["state"] == "in_review"


def test_approval_matches_discloses_minimised_and_notifies(world: World) -> None:
    rid = _submit(world, body(POLICE_NHS, fields=["address", "address-postalcode"]))
    r = world.post("reviewer", f"/v1/review/requests/{rid}/verdict",
                   json={"verdict": "approve", "reason": "serious offence, recent"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "notified"
    seen = world.clients["agency_a"].get(f"/v1/requests/{rid}").json()
    assert seen["disclosure"]["fields"] == {"address": "1 Test Street, Leeds",
                                            "address-postalcode": "LS1 4AP"}
    assert "gp_practice" not in str(seen) and "07700900001" not in str(seen)
    letters = world.outbox("disclosure_notice")
    assert len(letters) == 1 and letters[0].recipient == "R-SUSPECT"
    text = letters[0].body
    assert "Metropolitan Police Service asked NHS Digital" in text
    assert "nhs-police-tracing" in text and "your address" in text and "your postcode" in text
    assert "1 Test Street" not in text  # the letter names fields, not their values
    view = world.clients["reviewer"].get(f"/v1/review/requests/{rid}").json()
    assert [t["to"] for t in view["transitions"]][-4:] == [
        "approved", "matched", "disclosed", "notified"]
    assert view["transitions"][3]["actor"] == "alice"


def test_refusal_and_second_verdict_conflict(world: World) -> None:
    rid = _submit(world, POLICE)
    path = f"/v1/review/requests/{rid}/verdict"
    r = world.post("reviewer", path, json={"verdict": "refuse", "reason": "grounds too thin"})
    assert r.json()["state"] == "refused"
    again = world.post("reviewer_2", path, json={"verdict": "approve", "reason": "late"})
    assert again.status_code == 409
    assert world.clients["agency_a"].get(f"/v1/requests/{rid}").json()["disclosure"] is None


def test_four_eyes_needs_two_different_reviewers(world: World) -> None:
    with transaction(world.cfg.factory) as s:
        settings.set_firewall(s, False, actor="t", reason="four-eyes test")
    # Home Office's token is made here: it is not one of the fixture's agencies.
    from safehaven.service import accounts

    with transaction(world.cfg.factory) as s:
        token, _ = accounts.create_agency_token(
            s, world.cfg.agreements, "home-office", scope=None, label="ho",
            at=datetime.now(UTC))
    ho = world.client()
    ho.headers["Authorization"] = f"Bearer {token}"
    r = ho.post("/v1/requests", json={**NHS_DEPORT, "made_on": "2018-07-01"})
    assert r.status_code == 201 and r.json()["decision"]["reviewers_required"] == 2
    rid = r.json()["id"]
    path = f"/v1/review/requests/{rid}/verdict"
    first = world.post("reviewer", path, json={"verdict": "approve", "reason": "grounds ok"})
    assert first.json() == {"id": rid, "state": "in_review", "approvals_needed": 1}
    same = world.post("reviewer", path, json={"verdict": "approve", "reason": "me again"})
    assert same.status_code == 409 and "different person" in same.json()["problems"][0]
    second = world.post("reviewer_2", path, json={"verdict": "approve", "reason": "agree"})
    assert second.status_code == 200 and second.json()["approvals_needed"] == 0
    # No register record for this subject: approved, then no match, nothing disclosed.
    assert second.json()["state"] == "no_match"


def test_exemption_recorded_and_listed_when_overdue(world_factory) -> None:  # type: ignore[no-untyped-def]
    clock = {"now": datetime.now(UTC)}
    world = world_factory(clock=lambda: clock["now"])
    rid = _submit(world, POLICE_NHS)
    path = f"/v1/review/requests/{rid}/verdict"
    today = clock["now"].date()
    bad = world.post("reviewer", path, json={
        "verdict": "approve", "reason": "ok",
        "exemption": {"exemption_id": "because", "reason": "x", "review_on": str(today)}})
    assert bad.status_code == 422 and bad.json()["problems"][0].startswith("exemption")
    assert world.clients["reviewer"].get(f"/v1/review/requests/{rid}").json()["state"] == \
        "in_review"  # the whole verdict was rolled back
    ok = world.post("reviewer", path, json={
        "verdict": "approve", "reason": "live investigation",
        "exemption": {"exemption_id": "prejudice-crime-prevention",
                      "reason": "suspect would flee", "review_on": str(today + timedelta(30))}})
    assert ok.status_code == 200 and ok.json()["state"] == "exempted"
    assert world.outbox("disclosure_notice") == []
    listed = world.clients["reviewer"].get("/v1/review/exemptions/overdue").json()
    assert listed["exemptions"] == []
    clock["now"] += timedelta(days=31)
    for role, name in (("reviewer", "alice"),):
        from tests.api.conftest import login

        world.csrf[role] = login(world.clients[role], name)
    overdue = world.clients["reviewer"].get("/v1/review/exemptions/overdue").json()["exemptions"]
    assert [(o["id"], o["days_overdue"], o["recorded_by"]) for o in overdue] == [(rid, 1, "alice")]
