"""The reviewer's verdict form for a tracing request: problems answer with the API's status
and keep what the reviewer wrote.

Why: the form used to answer 422 to everything (a forged or stale CSRF token, a request
another reviewer had just decided) and to come back empty, so a reviewer lost a long
written reason to a stale page.  Same real app and store as the aggregate desk tests.
"""

from __future__ import annotations

import html

from tests.builders import POLICE
from tests.web.desk import Desk
from tests.web.test_aggregate_pages import csrf_of

HOSTILE_REASON = 'Checked the case file </textarea><script>alert("x")</script>'


def _in_review(desk: Desk, key: str) -> str:
    r = desk.agency.post("/v1/requests", json={**POLICE, "request_id": key})
    assert r.status_code == 201 and r.json()["state"] == "in_review", r.text
    return str(r.json()["id"])


def _post(client, rid: str, form: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post(f"/review/{rid}", data=form, follow_redirects=False)


def test_a_missing_reason_is_422_and_the_choice_is_kept(desk: Desk) -> None:
    rid = _in_review(desk, "no-reason")
    alice = desk.login("alice")
    csrf = csrf_of(alice.get(f"/review/{rid}").text)
    r = _post(alice, rid, {"verdict": "refuse", "reason": "  ", "csrf_token": csrf})
    assert r.status_code == 422
    assert "reason" in r.text and 'class="error-summary"' in r.text
    assert 'value="refuse" checked' in r.text and 'value="approve" checked' not in r.text


def test_a_bad_csrf_token_is_403_and_the_reason_is_kept_escaped(desk: Desk) -> None:
    rid = _in_review(desk, "bad-csrf")
    alice = desk.login("alice")
    r = _post(alice, rid, {"verdict": "approve", "reason": HOSTILE_REASON,
                           "csrf_token": "0" * 43})
    assert r.status_code == 403 and "CSRF" in r.text
    assert html.escape(HOSTILE_REASON, quote=False) in r.text.replace("&#34;", '"')
    assert '<script>alert("x")</script>' not in r.text
    assert desk.agency.get(f"/v1/requests/{rid}").json()["state"] == "in_review"


def test_a_request_decided_meanwhile_is_409(desk: Desk) -> None:
    rid = _in_review(desk, "decided")
    alice, bob = desk.login("alice"), desk.login("bob")
    stale = csrf_of(bob.get(f"/review/{rid}").text)  # bob opens the page ...
    done = _post(alice, rid, {"verdict": "refuse", "reason": "Not serious enough",
                              "csrf_token": csrf_of(alice.get(f"/review/{rid}").text)})
    assert done.status_code == 303                   # ... alice decides first
    late = _post(bob, rid, {"verdict": "approve", "reason": "Looks proportionate",
                            "csrf_token": stale})
    assert late.status_code == 409 and "cannot review this request now" in late.text


def test_an_unknown_request_is_404(desk: Desk) -> None:
    alice = desk.login("alice")
    csrf = csrf_of(alice.get(f"/review/{_in_review(desk, 'known')}").text)
    r = _post(alice, "00000000-0000-4000-8000-000000000000",
              {"verdict": "approve", "reason": "x", "csrf_token": csrf})
    assert r.status_code == 404 and "Request not found" in r.text


def test_the_request_page_lists_every_exemption_decision_escaped(desk: Desk) -> None:
    from datetime import date, timedelta

    from safehaven.service.tracing import InMemoryRegister
    from tests.api.conftest import REGISTER

    desk.cfg.matcher = InMemoryRegister(REGISTER)  # the suspect is found: a disclosure
    rid = _in_review(desk, "exempted")
    alice = desk.login("alice")
    csrf = csrf_of(alice.get(f"/review/{rid}").text)
    review_on = (date.today() + timedelta(days=30)).isoformat()
    r = _post(alice, rid, {"verdict": "approve", "reason": "Serious offence",
                           "csrf_token": csrf, "exemption_id": "prejudice-crime-prevention",
                           "exemption_reason": HOSTILE_REASON, "review_on": review_on})
    assert r.status_code == 303, r.text
    page = alice.get(f"/review/{rid}").text
    assert 'id="exemption-history"' in page and "recorded" in page and review_on in page
    assert '<script>alert("x")</script>' not in page
