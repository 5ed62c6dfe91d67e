"""The pages in a real headless Chromium: reviewer desk with four-eyes, portal, public report.

Debian's ``chromium`` is driven by Playwright through ``executable_path`` (the test setup,
``scripts/ensure-chromium.sh``, installs it; Playwright never downloads a browser).  The
server is the real app (API + pages) under uvicorn on a free port, over a store filled by a
small ``safehaven demo`` replay (which also writes the controllers' synthetic datasets and
leaves one aggregate release waiting for two reviewers) plus one tracing request that needs
two reviewers.  A screenshot of every page is saved under ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

CHROMIUM = os.environ.get("SAFEHAVEN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
if not Path(CHROMIUM).is_file():  # pragma: no cover - depends on the machine
    pytest.skip(f"no Chromium at {CHROMIUM} (scripts/ensure-chromium.sh installs it)",
                allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _person(home: Path) -> dict[str, Any]:
    """An adult from the demo register, described exactly as the register holds them."""
    import pyarrow.parquet as pq

    table = pq.read_table(home / "register" / "register.parquet",
                          columns=["nhs_number", "family", "given", "birthdate", "postcode"])
    for row in table.to_pylist():
        if row["given"] and row["birthdate"] < "1990-01-01":
            return row
    raise AssertionError("no adult in the demo register")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import uvicorn

    from safehaven.agreements import load_dir
    from safehaven.api.app import create_app
    from safehaven.api.context import ApiConfig
    from safehaven.cli import app as cli
    from safehaven.demo.registers import RegisterAdapter
    from safehaven.domain.request import parse_request_obj
    from safehaven.matching.online import RegisterMatcher
    from safehaven.service import requests as svc
    from safehaven.store.db import open_store, session_factory, transaction
    from safehaven.web import pages

    home = tmp_path_factory.mktemp("browser-home")
    saved = {k: os.environ.get(k) for k in ("SAFEHAVEN_HOME", "SAFEHAVEN_DATABASE_URL")}
    os.environ["SAFEHAVEN_HOME"] = str(home)
    os.environ.pop("SAFEHAVEN_DATABASE_URL", None)
    try:
        res = CliRunner().invoke(cli, ["demo", "--no-serve", "--json", "--people", "2000",
                                       "--scale", "0.01"])
        assert res.exit_code == 0, res.output
        person = _person(home)
        body = {
            "request_id": "browser-four-eyes",
            "requester": "home-office",
            "agreement": "nhs-digital-home-office-2017",
            "purpose": "welfare-protection",
            "made_on": "2018-06-01",
            "subject": {"family": person["family"], "given": person["given"],
                        "birthdate": person["birthdate"],
                        "address-postalcode": person["postcode"]},
            "grounds": {"welfare_concern": "A child in the household is at risk of harm",
                        "other_attempts": ["Social services contacted"]},
            "fields": ["address", "address-postalcode"],
        }
        agreements = load_dir()
        engine = open_store(None)
        factory = session_factory(engine)
        with transaction(factory) as session:
            submitted = svc.submit(session, parse_request_obj(body), agreements,
                                   received_at=datetime.now(UTC))
        assert submitted.outcome == "needs_review", submitted.decision
        api = create_app(ApiConfig(engine=engine, agreements=agreements,
                                   matcher=RegisterAdapter(RegisterMatcher.load())))
        pages.install(api)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "server did not start"
        yield {"base": f"http://127.0.0.1:{port}", "id": submitted.public_id,
               "person": person, "factory": factory}
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def login(page: Any, base: str, user: str) -> None:
    page.goto(f"{base}/review/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(f"safehaven-demo-{user}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/review$"))


def test_four_eyes_approval_then_the_subject_sees_the_disclosure(site, browser):
    base, rid = site["base"], site["id"]
    page = browser.new_page(viewport={"width": 1100, "height": 900})

    login(page, base, "reviewer-a")
    assert page.get_by_role("heading", name="Requests waiting for review").is_visible()
    link = page.locator(f'a[href="/review/{rid}"]')
    assert link.count() == 1
    shot(page, "reviewer-queue")
    link.click()
    assert page.get_by_role("heading", name="What the rules said").is_visible()
    assert page.locator("td code", has_text="purpose.permitted").count() == 1
    page.get_by_label("Reason").fill("Welfare concern documented by social services.")
    shot(page, "reviewer-request")
    page.get_by_role("button", name="Record verdict").click()
    page.wait_for_url(re.compile(r"done="))
    assert page.locator("#state").inner_text() == "in review"
    assert "approvals still needed: 1" in page.locator("dl.summary").first.inner_text()
    # The same reviewer cannot give the second approval.
    page.get_by_label("Reason").fill("Approving twice")
    page.get_by_role("button", name="Record verdict").click()
    assert "already reviewed" in page.locator(".error-summary").inner_text()
    page.get_by_role("button", name="Sign out").click()

    login(page, base, "reviewer-b")
    page.goto(f"{base}/review/{rid}")
    page.get_by_label("Reason").fill("Second reviewer: proportionate, notify the person.")
    page.get_by_role("button", name="Record verdict").click()
    page.wait_for_url(re.compile(r"done="))
    assert page.locator("#state").inner_text() == "notified"
    shot(page, "reviewer-four-eyes-done")
    page.get_by_role("button", name="Sign out").click()

    # The person asks for a code, reads it from the letter (the outbox), and logs in.
    person = site["person"]
    page.goto(f"{base}/portal")
    page.get_by_label("NHS number").fill(person["nhs_number"])
    page.get_by_label("Date of birth").fill(person["birthdate"])
    shot(page, "portal-start")
    page.get_by_role("button", name="Send me a code").click()
    from safehaven.store.accounts import OutboxRow

    with site["factory"]() as session:
        letter = session.execute(
            select(OutboxRow.body).where(OutboxRow.kind == "access_code",
                                         OutboxRow.recipient == person["nhs_number"])
            .order_by(OutboxRow.id.desc())
        ).scalars().first()
    assert letter is not None
    code = re.search(r"\b(\d{6})\b", letter).group(1)  # type: ignore[union-attr]
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/portal/requests$"))
    text = page.locator("main").inner_text()
    assert "Home Office Immigration Enforcement" in text and "2018-06-01" in text
    assert f"address-postalcode: {person['postcode']}" in text
    shot(page, "portal-requests")
    page.close()


def _unlabelled(page: Any) -> list[str]:
    return list(page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
               .filter(e => !(e.id && document.querySelector(`label[for="${e.id}"]`)))
               .map(e => e.name)"""))


def test_four_eyes_release_of_an_aggregate_table_through_the_desk(site, browser):
    base = site["base"]
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    login(page, base, "reviewer-a")
    waiting = page.locator('#aggregates ~ table a[href^="/review/aggregates/"]')
    assert waiting.count() == 1, "the demo leaves one aggregate release in review"
    href = waiting.first.get_attribute("href")
    assert href is not None
    page.locator("#aggregates").scroll_into_view_if_needed()
    shot(page, "reviewer-queue-with-aggregates")
    waiting.first.click()
    assert page.get_by_role("heading", name="The table as it would be released").is_visible()
    assert page.locator("#release-state").text_content() == "in review"
    table = page.locator("table#counts")
    assert table.is_visible()
    suppressed = table.locator("td.suppressed")
    assert suppressed.count() > 0
    assert suppressed.first.inner_text() == "suppressed"
    assert table.locator("tfoot th").first.inner_text() == "Total"
    sha = page.locator("#table-sha256").inner_text()
    assert re.fullmatch(r"[0-9a-f]{64}", sha)
    assert _unlabelled(page) == []
    # No choice made: the form says so and keeps the reason.
    page.get_by_label("Reason").fill("Planning need stated; every cell shown is 10 or more.")
    page.get_by_role("button", name="Record verdict").click()
    assert "verdict: choose approve or refuse" in page.locator(".error-summary").inner_text()
    assert page.get_by_label("Reason").input_value().startswith("Planning need stated")
    page.get_by_label("Approve").check()
    shot(page, "aggregate-review")
    page.get_by_role("button", name="Record verdict").click()
    page.wait_for_url(re.compile(r"done="))
    assert page.locator("#state").inner_text() == "in review"
    assert "approvals still needed: 1" in page.locator("dl.summary").inner_text()
    # Four-eyes: the same reviewer is offered no second verdict.
    assert page.locator("#already-reviewed").is_visible()
    assert page.get_by_role("button", name="Record verdict").count() == 0
    page.get_by_role("button", name="Sign out").click()

    login(page, base, "reviewer-b")
    page.goto(base + href)
    page.get_by_label("Approve").check()
    page.get_by_label("Reason").fill("Second reviewer: proportionate for commissioning.")
    page.get_by_role("button", name="Record verdict").click()
    page.wait_for_url(re.compile(r"done="))
    assert page.locator("#state").inner_text() == "released"
    assert page.get_by_role("heading", name="The table as released").is_visible()
    assert page.locator("#table-sha256").inner_text() == sha  # what was reviewed, released
    reviews = page.locator("h2:has-text('Reviews so far') + table").inner_text()
    assert "reviewer-a" in reviews and "reviewer-b" in reviews
    shot(page, "aggregate-released")
    page.get_by_role("button", name="Sign out").click()

    # Oversight reads every release; the public page counts them and shows no table.
    page.goto(f"{base}/review/login?next=/oversight")
    page.get_by_label("Username").fill("oversight")
    page.get_by_label("Password").fill("safehaven-demo-oversight")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/oversight$"))
    assert page.get_by_role("heading", name="Aggregate releases").is_visible()
    assert page.locator("#releases code", has_text="firewall.no-enforcement-targeting").count() == 1
    shot(page, "oversight-aggregates")
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{base}/transparency")
    counts = page.locator("#aggregate-counts")
    assert counts.is_visible() and "gla-outreach-service-planning" in counts.inner_text()
    assert page.locator("table#counts").count() == 0 and sha not in page.content()
    counts.scroll_into_view_if_needed()
    shot(page, "transparency-aggregates")
    page.close()


def test_public_report_renders_its_charts(site, browser):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{site['base']}/transparency?agreement=nhs-digital-home-office-2017")
    assert page.get_by_role("heading", name="Transparency report").is_visible()
    chart = page.locator("svg[role=img]").first
    assert chart.is_visible()
    assert page.locator("rect.bar").count() > 0
    markers = page.locator("line.marker")
    assert markers.count() >= 2  # narrowed (2018-05) and withdrawn (2018-11)
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    shot(page, "transparency")
    page.goto(f"{site['base']}/transparency")
    assert page.locator("svg[role=img]").count() >= 3
    shot(page, "transparency-all")
    page.close()


def test_agreements_timeline_and_ledger_verification(site, browser):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{site['base']}/agreements")
    assert page.locator("rect.segment").count() >= 8
    shot(page, "agreements")
    page.get_by_role("link", name=re.compile("NHS Digital – Home Office")).click()
    assert page.get_by_role("heading", name="Status history").is_visible()
    assert "2018-11-02" in page.locator("ol.timeline").inner_text()
    shot(page, "agreement")
    page.goto(f"{site['base']}/ledger")
    page.get_by_role("button", name="Verify the whole ledger").click()
    status = page.get_by_role("status")
    assert "Verified" in status.inner_text()
    shot(page, "ledger")
    page.close()


def test_pages_have_labels_headings_and_work_without_javascript(site, browser):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    for path in ("/", "/transparency", "/agreements", "/ledger", "/portal", "/review/login"):
        page.goto(site["base"] + path)
        assert page.locator("h1").count() == 1, path
        assert page.locator("main#main").count() == 1, path
        unlabeled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                   .filter(e => !(e.id && document.querySelector(`label[for="${e.id}"]`)))
                   .map(e => e.name)""")
        assert unlabeled == [], (path, unlabeled)
    # The stylesheet is a same-origin file, so the pages' strict CSP lets it apply.
    header = page.evaluate(
        "getComputedStyle(document.querySelector('header.site')).backgroundColor")
    assert header == "rgb(11, 12, 12)"
    # A form post works with scripting off (POST/redirect/GET).
    page.goto(site["base"] + "/review/login")
    page.fill("#username", "reviewer-c")
    page.fill("#password", "safehaven-demo-reviewer-c")
    page.click("button[type=submit]")
    assert page.url.endswith("/review")
    context.close()
