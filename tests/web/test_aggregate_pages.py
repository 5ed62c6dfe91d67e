"""Aggregate releases on the reviewer desk, the oversight page and the transparency page.

The real app (API and pages) over a real store, on SQLite and PostgreSQL, driven with
httpx (TestClient) as a browser would: people log in through the login form, read the CSRF
token from the page's form and post the verdict form.  Releases are made by agencies over
``POST /v1/aggregates`` under the test statistics agreements (no review; four-eyes) and the
GLA map (one reviewer, once the firewall is off).
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from safehaven.api.hardening import PAGE_CSP
from safehaven.domain.canonical import content_hash
from safehaven.service import accounts, settings
from safehaven.store.accounts import OutboxRow
from safehaven.store.db import transaction
from tests.api.aggregate_support import (
    GLA_MAP,
    STATS,
    STATS_REQUEST,
    STATS_TWO,
    published_values,
)
from tests.builders import POLICE
from tests.web.desk import (
    HOSTILE,
    HOSTILE_IMG,
    PASSWORD,
    SUBJECT_BIRTHDATE,
    SUBJECT_NHS,
    Desk,
)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def verdict(client: TestClient, release_id: str, choice: str, reason: str,
            csrf: str | None = "from-page") -> Any:
    if csrf == "from-page":
        csrf = csrf_of(client.get(f"/review/aggregates/{release_id}").text)
    form = {"verdict": choice, "reason": reason}
    if csrf is not None:
        form["csrf_token"] = csrf
    return client.post(f"/review/aggregates/{release_id}", data=form, follow_redirects=False)


def four_eyes(desk: Desk) -> str:
    return desk.release({**STATS_REQUEST, "request_id": "four-eyes", "agreement": STATS_TWO})["id"]


def table_values(page: str) -> list[str]:
    """Every value cell of the page's counts table, as shown."""
    block = re.search(r'<table class="counts" id="counts">(.*?)</table>', page, re.S)
    assert block, "no counts table on the page"
    return [html.unescape(v) for v in re.findall(r'<td class="num[^"]*">([^<]*)</td>',
                                                 block.group(1))]


def is_login_redirect(r: Any, path: str) -> bool:
    return r.status_code == 303 and r.headers["location"].startswith("/review/login?next=") \
        and path in r.headers["location"].replace("%2F", "/")


# --- who may see and decide -------------------------------------------------------------------


def test_anonymous_is_sent_to_log_in_and_decides_nothing(desk: Desk) -> None:
    rid = four_eyes(desk)
    anonymous = desk.browser()
    for path in ("/review", f"/review/aggregates/{rid}", "/oversight",
                 f"/oversight/aggregates/{rid}"):
        r = anonymous.get(path, follow_redirects=False)
        assert is_login_redirect(r, path), (path, r.status_code, r.headers)
    r = anonymous.post(f"/review/aggregates/{rid}",
                       data={"verdict": "approve", "reason": "no one"}, follow_redirects=False)
    assert is_login_redirect(r, f"/review/aggregates/{rid}")
    assert desk.reviews() == 0 and desk.state(rid) == "in_review"


def _subject(desk: Desk) -> TestClient:
    """A data subject logged in through the portal with a code from the letter."""
    client = desk.browser()
    r = client.post("/portal/code", data={"nhs_number": SUBJECT_NHS,
                                          "birthdate": SUBJECT_BIRTHDATE})
    assert r.status_code == 200, r.text
    with transaction(desk.cfg.factory) as s:
        letter = s.execute(select(OutboxRow.body).where(OutboxRow.kind == "access_code")
                           .order_by(OutboxRow.id.desc())).scalars().first()
    assert letter is not None
    code = letter.split("code is ")[1][:6]
    r = client.post("/portal/login", data={"nhs_number": SUBJECT_NHS,
                                           "birthdate": SUBJECT_BIRTHDATE, "code": code},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/portal/requests"
    return client


def test_agency_oversight_and_subject_cannot_decide(desk: Desk) -> None:
    rid = four_eyes(desk)
    alice = desk.login("alice")
    csrf = csrf_of(alice.get(f"/review/aggregates/{rid}").text)
    oversight = desk.login("olive")
    subject = _subject(desk)
    # An agency's token opens no page: the desk is for people with a session.
    for client in (desk.agency, oversight, subject):
        page = client.get(f"/review/aggregates/{rid}", follow_redirects=False)
        assert is_login_redirect(page, f"/review/aggregates/{rid}")
        assert "Record verdict" not in page.text
        # Even holding a reviewer's CSRF token, a non-reviewer's post decides nothing.
        r = client.post(f"/review/aggregates/{rid}",
                        data={"verdict": "approve", "reason": "not mine to give",
                              "csrf_token": csrf}, follow_redirects=False)
        assert is_login_redirect(r, f"/review/aggregates/{rid}")
    assert desk.reviews() == 0 and desk.state(rid) == "in_review"
    assert not [e for e in desk.ledger() if e["type"] == "aggregate.review"]


def test_a_verdict_without_the_forms_csrf_token_is_refused(desk: Desk) -> None:
    rid = four_eyes(desk)
    alice = desk.login("alice")
    missing = verdict(alice, rid, "approve", "Looks fine", csrf=None)
    assert missing.status_code == 403
    assert "CSRF" in missing.text and 'class="error-summary"' in missing.text
    wrong = verdict(alice, rid, "approve", "Looks fine", csrf="0" * 43)
    assert wrong.status_code == 403
    # Another person's token does not do either.
    bob_csrf = csrf_of(desk.login("bob").get(f"/review/aggregates/{rid}").text)
    assert verdict(alice, rid, "approve", "Looks fine", csrf=bob_csrf).status_code == 403
    assert desk.reviews() == 0 and desk.state(rid) == "in_review"


def test_four_eyes_needs_two_different_reviewers_through_the_desk(desk: Desk) -> None:
    rid = four_eyes(desk)
    alice, bob = desk.login("alice"), desk.login("bob")
    page = alice.get(f"/review/aggregates/{rid}").text
    assert "2 approvals are still needed" in page and "Record verdict" in page
    held_values = table_values(page)

    first = verdict(alice, rid, "approve", "Counts by area for planning; cells checked.")
    assert first.status_code == 303
    assert first.headers["location"] == f"/review/aggregates/{rid}?done=in_review"
    after = alice.get(first.headers["location"]).text
    assert 'id="state">in review<' in after and "approvals still needed: 1" in after
    assert 'id="already-reviewed"' in after and "Record verdict" not in after
    assert desk.state(rid) == "in_review"
    # The agency sees no table yet.
    assert desk.agency.get(f"/v1/aggregates/{rid}").json()["table"] is None

    # The same reviewer again: refused by the service's four-eyes rule, nothing recorded.
    again = verdict(alice, rid, "approve", "Approving twice", csrf=csrf_of(after))
    assert again.status_code == 409
    assert "already reviewed" in html.unescape(again.text)
    assert 'id="already-reviewed"' in again.text and "Record verdict" not in again.text
    assert desk.reviews() == 1

    second = verdict(bob, rid, "approve", "Second reviewer: proportionate.")
    assert second.headers["location"] == f"/review/aggregates/{rid}?done=released"
    released = bob.get(second.headers["location"]).text
    assert 'id="release-state">released<' in released
    assert "The table as released" in released
    assert table_values(released) == held_values  # exactly the table that was reviewed
    got = desk.agency.get(f"/v1/aggregates/{rid}").json()
    assert got["state"] == "released"
    assert f'id="table-sha256">{got["table_sha256"]}<' in released
    assert got["table_sha256"] == content_hash(got["table"])
    kinds = [e["type"] for e in desk.ledger() if e.get("release") == rid]
    assert kinds == ["aggregate.held", "aggregate.review", "aggregate.review",
                     "aggregate.release"]
    assert [r["reviewer"] for r in got_reviews(desk, rid)] == ["alice", "bob"]
    # Not in the queue any more.
    assert f"/review/aggregates/{rid}" not in bob.get("/review").text


def got_reviews(desk: Desk, rid: str) -> list[dict[str, Any]]:
    olive = desk.login("olive")
    page = olive.get(f"/oversight/aggregates/{rid}")
    assert page.status_code == 200
    rows = re.findall(r"<tr><td>([^<]+)</td><td>(approve|refuse)</td><td>([^<]*)</td>",
                      page.text)
    return [{"reviewer": r, "verdict": v, "reason": html.unescape(why)} for r, v, why in rows]


def test_reason_is_mandatory_and_the_verdict_explicit(desk: Desk) -> None:
    rid = four_eyes(desk)
    alice = desk.login("alice")
    empty = verdict(alice, rid, "approve", "")
    assert empty.status_code == 422
    assert "reason: a written reason is required for every review" in empty.text
    blank = verdict(alice, rid, "approve", "   \n ")
    assert blank.status_code == 422
    assert "reason: a written reason is required for every review" in blank.text
    unchosen = verdict(alice, rid, "", "I have a reason but chose nothing")
    assert unchosen.status_code == 422
    assert "verdict: choose approve or refuse" in unchosen.text
    assert "I have a reason but chose nothing" in unchosen.text
    odd = verdict(alice, rid, "maybe", "Hedging")
    assert odd.status_code == 422 and "verdict: choose approve or refuse" in odd.text
    assert desk.reviews() == 0 and desk.state(rid) == "in_review"


def test_one_refusal_refuses_and_the_table_is_not_shown_again(desk: Desk) -> None:
    rid = four_eyes(desk)
    alice = desk.login("alice")
    r = verdict(alice, rid, "refuse", "Nationality by area is not needed for this purpose.")
    assert r.headers["location"] == f"/review/aggregates/{rid}?done=refused"
    page = alice.get(r.headers["location"]).text
    assert 'id="release-state">refused<' in page
    assert 'id="counts"' not in page and "refused by a reviewer" in page
    assert "Record verdict" not in page
    assert desk.agency.get(f"/v1/aggregates/{rid}").json()["table"] is None
    late = verdict(desk.login("bob"), rid, "approve", "Too late", csrf=csrf_of(page))
    assert late.status_code == 403  # bob's session, alice's token
    bob = desk.login("bob")
    late = verdict(bob, rid, "approve", "Too late",
                   csrf=csrf_of(bob.get("/review").text))
    assert late.status_code == 409 and "not in review" in late.text


def test_unknown_release_is_a_not_found_page(desk: Desk) -> None:
    alice = desk.login("alice")
    for rid in ("no-such-release", "x" * 200):
        r = alice.get(f"/review/aggregates/{rid}")
        assert r.status_code == 404 and "Aggregate release not found" in r.text
        r = verdict(alice, rid, "approve", "Why not", csrf=csrf_of(alice.get("/review").text))
        assert r.status_code == 404
    assert alice.get("/review/aggregates", follow_redirects=False).headers["location"] \
        == "/review#aggregates"


# --- what the reviewer sees ------------------------------------------------------------------


def test_queue_lists_both_kinds_apart_and_only_what_waits(desk: Desk) -> None:
    with transaction(desk.cfg.factory) as s:
        settings.set_firewall(s, False, actor="controller", reason="page test")
    # A tracing request that needs a reviewer, made with a police token.
    tracing = desk.agency.post("/v1/requests", json=POLICE)
    assert tracing.status_code in (200, 201, 202), tracing.text
    tid = tracing.json()["id"]
    assert tracing.json()["state"] == "in_review"
    held = four_eyes(desk)
    released = desk.release(STATS_REQUEST)["id"]
    page = desk.login("alice").get("/review").text
    tracing_part, aggregate_part = page.split('id="aggregates"')
    assert f'href="/review/{tid}"' in tracing_part and held not in tracing_part
    assert f'href="/review/aggregates/{held}"' in aggregate_part and tid not in aggregate_part
    assert released not in page
    assert "counts, never a person" in aggregate_part
    assert "Area (postcode district) × Nationality group" in aggregate_part


def test_release_page_shows_request_rules_and_the_protected_table(desk: Desk) -> None:
    rid = four_eyes(desk)
    shown = desk.login("alice").get(f"/review/aggregates/{rid}")
    assert shown.headers["content-security-policy"] == PAGE_CSP
    page = shown.text
    assert "<script" not in page and " style=" not in page  # the CSP allows neither
    # The request as received, and every rule with its reason.
    assert "&#34;request_id&#34;: &#34;four-eyes&#34;" in page
    for rule in ("aggregate.permitted", "aggregate.dimensions", "purpose.limitation",
                 "review.required", "firewall"):
        assert f"<code>{rule}</code>" in page, rule
    assert "two different reviewers must approve (four-eyes)" in page
    # The table exactly as the API would release it: same values, same suppression,
    # margins included, nothing from 1 to 9 and no point location.
    with transaction(desk.cfg.factory) as s:
        from safehaven.service import aggregates as svc
        table = svc.get_release(s, rid).protected_table
    assert table is not None
    cols = list(table["column_totals"])

    def shown(v: Any) -> str:
        return "suppressed" if v == "suppressed" else f"{v:,}"

    expected = [shown(v) for row in table["rows"]
                for v in [*(row["cells"][c] for c in cols), row["total"]]]
    expected += [shown(v) for v in [*(table["column_totals"][c] for c in cols), table["total"]]]
    assert table_values(page) == expected
    values = published_values(table)
    assert values.count("suppressed") == table_values(page).count("suppressed") > 0
    assert all(v == "suppressed" or int(v.replace(",", "")) == 0
               or int(v.replace(",", "")) >= 10 for v in table_values(page))
    assert f"{table['suppressed_cells']} values are hidden" in page
    for point in ("latitude", "longitude", "51.5", "E1 6AN"):
        assert point not in page


def test_hostile_labels_from_the_data_are_shown_escaped(desk: Desk) -> None:
    rid = desk.release({**STATS_REQUEST, "request_id": "by-gender", "agreement": STATS_TWO,
                        "dimensions": ["area", "gender"]})["id"]
    alice = desk.login("alice")
    page = alice.get(f"/review/aggregates/{rid}").text
    assert HOSTILE not in page and HOSTILE_IMG not in page
    assert html.escape(HOSTILE, quote=False) in page or "&lt;script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    # Column headings carry the labels; the page's only markup is its own.
    heads = re.findall(r'<th scope="col" class="num">([^<]*)</th>', page)
    assert HOSTILE in [html.unescape(h) for h in heads]
    # Approved by two, the same labels on the oversight page are escaped too.
    verdict(alice, rid, "approve", "ok")
    verdict(desk.login("bob"), rid, "approve", "ok")
    seen = desk.login("olive").get(f"/oversight/aggregates/{rid}").text
    assert HOSTILE not in seen and "&lt;script&gt;" in seen


# --- oversight and the public ------------------------------------------------------------------


def test_oversight_sees_every_release_read_only(desk: Desk) -> None:
    with transaction(desk.cfg.factory) as s:
        token, _ = accounts.create_agency_token(s, desk.cfg.agreements, "home-office",
                                                scope=None, label="ho", at=datetime.now(UTC))
    home_office = TestClient(desk.app, headers={"Authorization": f"Bearer {token}"})
    desk.clients.append(home_office)
    refused = home_office.post("/v1/aggregates", json=GLA_MAP).json()["id"]
    released = desk.release(STATS_REQUEST)["id"]
    held = four_eyes(desk)
    olive = desk.login("olive")
    page = olive.get("/oversight")
    assert page.status_code == 200
    for rid in (refused, released, held):
        assert f'href="/oversight/aggregates/{rid}"' in page.text
    assert "<code>firewall.no-enforcement-targeting</code>" in page.text
    counts = dict(re.findall(r"<code>([a-z0-9-]+)</code></a></td><td>[a-z-]+</td>"
                             r'<td class="num">(\d+)</td>', page.text))
    assert counts == {"gla-home-office-outreach-map": "1", STATS: "1", STATS_TWO: "1"}
    # A refusal by the rules shows no table (none was made); a held one has no form here.
    assert 'id="counts"' not in olive.get(f"/oversight/aggregates/{refused}").text
    detail = olive.get(f"/oversight/aggregates/{held}").text
    assert 'id="counts"' in detail and "Record verdict" not in detail
    assert 'href="/oversight"' in detail
    # Oversight lands on its own page after logging in; reviewers cannot read it.
    login = desk.browser().post("/review/login", data={"username": "olive",
                                                       "password": PASSWORD},
                                follow_redirects=False)
    assert login.headers["location"] == "/oversight"
    assert is_login_redirect(desk.login("alice").get("/oversight", follow_redirects=False),
                             "/oversight")


def test_transparency_counts_outcomes_and_shows_no_table(desk: Desk) -> None:
    with transaction(desk.cfg.factory) as s:
        token, _ = accounts.create_agency_token(s, desk.cfg.agreements, "home-office",
                                                scope=None, label="ho", at=datetime.now(UTC))
    home_office = TestClient(desk.app, headers={"Authorization": f"Bearer {token}"})
    desk.clients.append(home_office)
    assert home_office.post("/v1/aggregates", json=GLA_MAP).json()["state"] == "refused"
    released = desk.release(STATS_REQUEST)
    refused_by_reviewer = four_eyes(desk)
    verdict(desk.login("alice"), refused_by_reviewer, "refuse", "Not needed")
    four_eyes_held = desk.release({**STATS_REQUEST, "request_id": "held",
                                   "agreement": STATS_TWO})
    page = desk.browser().get("/transparency").text
    block = page.split('id="aggregate-counts"')[1].split("</table>")[0]
    found = re.findall(
        r'<code>([a-z0-9-]+)</code></a></td><td>[a-z-]+</td>((?:<td class="num">\d+</td>)+)',
        block)
    rows = {agreement: [int(n) for n in re.findall(r"\d+", cells)] for agreement, cells in found}
    # asked, released, refused by the rules, of which by the firewall, by a reviewer, waiting
    assert rows == {"gla-home-office-outreach-map": [1, 0, 1, 1, 0, 0],
                    STATS: [1, 1, 0, 0, 0, 0], STATS_TWO: [2, 0, 0, 0, 1, 1]}
    # Nothing from any table reaches the public page: no label, no hash, no id.
    table = released["table"]
    for label in [r["label"] for r in table["rows"]]:
        assert f">{label}<" not in page
    assert released["table_sha256"] not in page
    assert released["id"] not in page and four_eyes_held["id"] not in page
    assert "suppressed" not in block
