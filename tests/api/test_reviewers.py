"""Reviewers over HTTP: login, CSRF, queue, verdicts, four-eyes, notices and exemptions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from safehaven.domain.canonical import content_hash
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


def _login(world: World, name: str, password: str, address: str = "10.0.0.1") -> int:
    return world.client(address).post("/v1/session",
                                      json={"username": name, "password": password}).status_code


def _ledger_entries(world: World) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from safehaven.store.models import LedgerEntryRow

    with transaction(world.cfg.factory) as s:
        return [json.loads(text)["event"]
                for text in s.execute(select(LedgerEntryRow.event).order_by(LedgerEntryRow.idx))
                .scalars()]


def _ledger_types(world: World) -> list[str]:
    return [e["type"] for e in _ledger_entries(world)]


def test_five_wrong_passwords_lock_the_account_for_that_address(world_factory) -> None:  # type: ignore[no-untyped-def]
    from safehaven.service.accounts import LOCKOUT, MAX_FAILED_LOGINS

    clock = {"now": datetime.now(UTC)}
    world = world_factory(clock=lambda: clock["now"])
    guesser, alice_desk = "203.0.113.9", "10.0.0.1"
    for _ in range(MAX_FAILED_LOGINS - 1):
        assert _login(world, "alice", "wrong guess", guesser) == 401
    assert _login(world, "alice", PASSWORD, guesser) == 200  # a success resets the count
    for _ in range(MAX_FAILED_LOGINS):
        assert _login(world, "alice", "wrong guess", guesser) == 401
    locks = [e for e in _ledger_entries(world) if e["type"] == "account.locked"]
    assert [e["scope"] for e in locks] == ["address"]
    assert guesser not in json.dumps(locks)  # the ledger holds a digest, not the address
    # Locked at that address: even the right password is not checked, the same 401.
    assert _login(world, "alice", PASSWORD, guesser) == 401
    # Alice at her own desk is not locked out by someone else's guessing.
    assert _login(world, "alice", PASSWORD, alice_desk) == 200
    assert _login(world, "bob", PASSWORD, guesser) == 200  # other accounts are untouched
    # ... and her success there does not lift the lock on the guesser's address.
    assert _login(world, "alice", PASSWORD, guesser) == 401
    clock["now"] += LOCKOUT + timedelta(seconds=1)
    assert _login(world, "alice", "wrong guess", guesser) == 401  # the sixth failure: locked
    clock["now"] += LOCKOUT + timedelta(seconds=1)                # again, for twice as long
    assert _login(world, "alice", PASSWORD, guesser) == 401
    clock["now"] += LOCKOUT
    assert _login(world, "alice", PASSWORD, guesser) == 200


def test_guessing_from_many_addresses_locks_the_whole_account(world_factory) -> None:  # type: ignore[no-untyped-def]
    from safehaven.service.accounts import ACCOUNT_FAILURE_LIMIT, LOCKOUT, MAX_FAILED_LOGINS

    clock = {"now": datetime.now(UTC)}
    world = world_factory(clock=lambda: clock["now"])
    per_address = MAX_FAILED_LOGINS - 1  # each address stays under its own limit

    def spray(prefix: str, count: int) -> None:
        for i in range(count):
            assert _login(world, "alice", "wrong guess", f"{prefix}.{i // per_address}") == 401

    spray("198.51.100", ACCOUNT_FAILURE_LIMIT - 1)
    assert _login(world, "alice", PASSWORD, "10.0.0.1") == 200  # a success resets the count
    spray("192.0.2", ACCOUNT_FAILURE_LIMIT)
    scopes = [e["scope"] for e in _ledger_entries(world) if e["type"] == "account.locked"]
    assert scopes == ["account"]
    assert _login(world, "alice", PASSWORD, "10.0.0.1") == 401  # locked for everyone
    assert _login(world, "bob", PASSWORD, "10.0.0.1") == 200
    clock["now"] += LOCKOUT + timedelta(seconds=1)
    assert _login(world, "alice", PASSWORD, "10.0.0.1") == 200


def test_unknown_users_and_unlock(world_factory) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from safehaven.cli import app
    from safehaven.service.accounts import MAX_FAILED_LOGINS

    world = world_factory()
    before = _ledger_types(world)
    for _ in range(MAX_FAILED_LOGINS * 2):
        assert _login(world, "nobody", "guess") == 401
    assert _ledger_types(world) == before  # nothing to count, nothing written
    for _ in range(MAX_FAILED_LOGINS):
        assert _login(world, "alice", "wrong guess") == 401
    assert _login(world, "alice", PASSWORD) == 401
    db = ["--database-url", world.cfg.engine.url.render_as_string(hide_password=False)]
    listed = json.loads(CliRunner().invoke(app, ["reviewer", "list", "--json", *db]).stdout)
    assert {r["username"]: r["locked_addresses"] for r in listed}["alice"] == 1
    res = CliRunner().invoke(app, ["reviewer", "unlock", "alice", *db])
    assert res.exit_code == 0, res.output
    assert _login(world, "alice", PASSWORD) == 200
    assert _ledger_types(world)[-1] == "account.unlocked"
    wrong_role = CliRunner().invoke(app, ["oversight", "unlock", "alice", *db])
    assert wrong_role.exit_code == 2 and "not a oversight" in wrong_role.output


def _exempted(world: World, clock: dict[str, datetime]) -> str:
    rid = _submit(world, POLICE_NHS)
    ok = world.post("reviewer", f"/v1/review/requests/{rid}/verdict", json={
        "verdict": "approve", "reason": "live investigation",
        "exemption": {"exemption_id": "prejudice-crime-prevention",
                      "reason": "suspect would flee",
                      "review_on": str(clock["now"].date() + timedelta(30))}})
    assert ok.status_code == 200 and ok.json()["state"] == "exempted", ok.text
    return rid


def test_overdue_exemption_is_renewed_then_lifted_and_the_person_told(world_factory) -> None:  # type: ignore[no-untyped-def]
    from tests.api.conftest import SUSPECT_NHS, login, subject_login

    clock = {"now": datetime.now(UTC)}
    world = world_factory(clock=lambda: clock["now"])
    rid = _exempted(world, clock)
    path = f"/v1/review/exemptions/{rid}"
    assert world.outbox("disclosure_notice") == []
    clock["now"] += timedelta(days=31)
    world.csrf["reviewer"] = login(world.clients["reviewer"], "alice")
    world.csrf["oversight"] = login(world.clients["oversight"], "olive")
    world.csrf["subject"] = subject_login(world, world.clients["subject"], SUSPECT_NHS,
                                          "1975-02-14")
    overdue = world.clients["reviewer"].get("/v1/review/exemptions/overdue").json()
    assert [o["id"] for o in overdue["exemptions"]] == [rid]
    # Renewal: a new date within the exemption's limit, and a reason.
    today = clock["now"].date()
    too_far = world.post("reviewer", path, json={
        "action": "renew", "reason": "still live", "review_on": str(today + timedelta(400))})
    assert too_far.status_code == 422 and too_far.json()["problems"][0].startswith("review_on")
    missing = world.post("reviewer", path, json={"action": "renew", "reason": "still live"})
    assert missing.status_code == 422 and missing.json()["problems"][0].startswith("review_on")
    no_csrf = world.clients["reviewer"].post(path, json={"action": "lift", "reason": "x"})
    assert no_csrf.status_code == 403
    renewed = world.post("reviewer", path, json={
        "action": "renew", "reason": "arrest expected soon",
        "review_on": str(today + timedelta(14))})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json() == {"id": rid, "state": "exempted",
                              "review_on": str(today + timedelta(14))}
    assert world.clients["reviewer"].get("/v1/review/exemptions/overdue").json() == {
        "exemptions": []}
    assert world.outbox("disclosure_notice") == []
    # The subject still sees nothing while the exemption stands.
    mine = world.clients["subject"].get("/v1/subject/requests")
    assert mine.status_code == 200 and rid not in mine.text
    # Lifted: state notified, the notice queued with the original disclosure's date and why
    # it is late, the request now visible to the person, the steps on the ledger.
    lifted = world.post("reviewer", path, json={"action": "lift", "reason": "suspect charged"})
    assert lifted.status_code == 200, lifted.text
    assert lifted.json() == {"id": rid, "state": "notified", "review_on": None}
    [notice] = world.outbox("disclosure_notice")
    assert "We did not tell you at the time because" in notice.body
    assert f"reference {rid}" in notice.body
    assert notice.recipient == "R-SUSPECT"
    mine = world.clients["subject"].get("/v1/subject/requests")
    assert mine.status_code == 200 and rid in mine.text
    with transaction(world.cfg.factory) as s:
        from sqlalchemy import select

        from safehaven.store.models import RequestRow, TransitionRow

        events = [t.event for t in s.execute(
            select(TransitionRow).join(RequestRow, RequestRow.id == TransitionRow.request_id)
            .where(RequestRow.public_id == rid).order_by(TransitionRow.id)).scalars()]
    assert events[-3:] == ["exempt", "renew_exemption", "lift_exemption"]
    again = world.post("reviewer", path, json={"action": "lift", "reason": "twice"})
    assert again.status_code == 409
    # Every decision's words are kept, and each matches the hash its ledger entry carries.
    history = world.clients["reviewer"].get(f"/v1/review/requests/{rid}").json()[
        "exemption_history"]
    assert [(h["action"], h["reason"], h["by"]) for h in history] == [
        ("recorded", "suspect would flee", "alice"),
        ("renewed", "arrest expected soon", "alice"),
        ("lifted", "suspect charged", "alice")]
    assert history[1]["review_on"] == str(today + timedelta(14))
    hashed = [e["detail"]["reason_sha256"] for e in _ledger_entries(world)
              if e.get("request") == rid and e["event"] in (
                  "exempt", "renew_exemption", "lift_exemption")]
    assert hashed == [content_hash(h["reason"]) for h in history]
    stats = world.clients["oversight"].get("/v1/oversight/statistics").json()
    [police] = [t for t in stats["totals"] if t["agreement"] == "nhs-police-tracing"]
    assert (police["notified"], police["exempted"]) == ("<10", 0)  # small counts suppressed
