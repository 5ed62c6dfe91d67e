"""Hardening controls, each tested so that removing it fails a test.

Security headers, per-agency rate limits, session fixation, CSRF, constant-time
comparisons, and that no secret or personal datum reaches the logs.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from sqlalchemy import text

from safehaven.api import hardening
from safehaven.api.app import create_app
from safehaven.api.auth import SESSION_COOKIE
from safehaven.service import accounts
from tests.faults.harness import POLICE
from tests.security.conftest import PASSWORD, SecWorld

# --- headers ---------------------------------------------------------------------------


def test_api_responses_carry_security_headers(sec: SecWorld) -> None:
    for r in (sec.agency.get("/v1/health"), sec.agency.get("/v1/requests"),
              sec.agency.get("/v1/requests/nope")):
        h = r.headers
        assert h["content-security-policy"].startswith("default-src 'none'")
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        assert h["cache-control"] == "no-store"  # disclosures must not be cached
        assert "strict-transport-security" not in h  # plain-HTTP loopback deployment


def test_pages_get_a_page_policy_and_https_gets_hsts() -> None:
    app = FastAPI()

    @app.get("/page", response_class=HTMLResponse)
    def page() -> str:
        return "<p>hello</p>"

    hardening.install(app, https=lambda: True)
    r = TestClient(app).get("/page")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_hsts_follows_secure_cookies(engine: Any, agreements: Any) -> None:
    from tests.api.conftest import make_config
    app = create_app(make_config(engine, agreements, secure_cookies=True))
    assert "strict-transport-security" in TestClient(app).get("/v1/health").headers


# --- rate limits -----------------------------------------------------------------------


def test_rate_limit_is_per_agency_token(sec: SecWorld, monkeypatch: pytest.MonkeyPatch,
                                        engine: Any, agreements: Any) -> None:
    from tests.api.conftest import make_config
    monkeypatch.setenv(hardening.RATE_ENV, "0.5")
    monkeypatch.setenv(hardening.BURST_ENV, "3")
    app = create_app(make_config(engine, agreements))
    other_token = _token(sec, "west-midlands-police")
    a = TestClient(app, headers={"Authorization": f"Bearer {sec.token}"})
    b = TestClient(app, headers={"Authorization": f"Bearer {other_token}"})
    assert [a.get("/v1/requests").status_code for _ in range(3)] == [200, 200, 200]
    limited = a.get("/v1/requests")
    assert limited.status_code == 429
    assert limited.json()["error"] == "too many requests"
    assert int(limited.headers["Retry-After"]) >= 1
    assert b.get("/v1/requests").status_code == 200  # another agency is unaffected
    assert a.get("/v1/health").status_code == 200  # health is never limited


def _token(sec: SecWorld, agency: str) -> str:
    from datetime import UTC, datetime

    with sec.cfg.factory() as s, s.begin():
        token, _ = accounts.create_agency_token(
            s, sec.cfg.agreements, agency, scope=None, label="x", at=datetime.now(UTC))
    return token


def test_bucket_refills_and_bulk_costs_more() -> None:
    now = [0.0]
    limiter = hardening.RateLimiter(rate=2.0, burst=4.0, clock=lambda: now[0])
    assert limiter.take("k", 4.0) == 0.0
    assert limiter.take("k") == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take("k") == 0.0
    small = hardening.RateLimiter(rate=1.0, burst=1.0, max_keys=2)
    for key in ("a", "b", "c"):
        small.take(key)
    assert len(small._buckets) == 2  # bounded memory


# --- sessions and CSRF -----------------------------------------------------------------


def test_login_never_adopts_a_session_id_the_client_chose(sec: SecWorld) -> None:
    """Session fixation: a planted cookie is ignored and replaced, and stays worthless."""
    client = TestClient(sec.app)
    planted = "attacker-chosen-session-id-0123456789abcdef"
    client.cookies.set(SESSION_COOKIE, planted)
    r = client.post("/v1/session", json={"username": "rita", "password": PASSWORD})
    assert r.status_code == 200
    issued = r.cookies.get(SESSION_COOKIE)
    assert issued and issued != planted
    attacker = TestClient(sec.app, cookies={SESSION_COOKIE: planted})
    assert attacker.get("/v1/review/queue").status_code == 401
    # A fresh login issues a fresh id; logging out kills the old one.
    again = TestClient(sec.app)
    second = again.post("/v1/session", json={"username": "rita", "password": PASSWORD})
    assert second.cookies.get(SESSION_COOKIE) != issued
    csrf = r.json()["csrf_token"]
    owner = TestClient(sec.app, cookies={SESSION_COOKIE: issued})
    assert owner.get("/v1/review/queue").status_code == 200
    assert owner.delete("/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    stale = TestClient(sec.app, cookies={SESSION_COOKIE: issued})
    assert stale.get("/v1/review/queue").status_code == 401


def test_cookie_flags(sec: SecWorld) -> None:
    r = TestClient(sec.app).post("/v1/session",
                                 json={"username": "rita", "password": PASSWORD})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_state_change_with_cookie_needs_the_sessions_csrf_token(sec: SecWorld) -> None:
    rid = sec.agency.post("/v1/requests", json={**POLICE, "request_id": "c1"}).json()["id"]
    path = f"/v1/review/requests/{rid}/verdict"
    verdict = {"verdict": "refuse", "reason": "csrf probe"}
    assert sec.reviewer.post(path, json=verdict).status_code == 403
    assert sec.reviewer.post(path, json=verdict,
                             headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    ok = sec.reviewer.post(path, json=verdict, headers={"X-CSRF-Token": sec.csrf})
    assert ok.status_code == 200


# --- constant time and secrets at rest -------------------------------------------------


def test_secret_comparisons_use_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(accounts.hmac, "compare_digest", spy)
    assert accounts.csrf_ok("abc", "abc") and not accounts.csrf_ok("abc", "abd")
    assert len(calls) == 2


def test_tokens_and_sessions_are_stored_only_as_digests(sec: SecWorld) -> None:
    """An insider reading the database gets no usable bearer token or session cookie, and
    the token lookup is by sha256 (an index probe on a digest leaks nothing about the
    token, unlike a character-by-character comparison)."""
    session_token = sec.reviewer.cookies.get(SESSION_COOKIE)
    assert session_token
    with sec.cfg.factory() as s:
        dump = []
        for table in ("agency_tokens", "web_sessions"):
            for row in s.execute(text(f"select * from {table}")):
                dump.append(" ".join(str(v) for v in row))
    blob = "\n".join(dump)
    assert sec.token not in blob and session_token not in blob
    assert accounts.digest(sec.token) in blob


# --- logs ------------------------------------------------------------------------------


def test_no_secret_or_personal_data_in_logs(sec: SecWorld, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    body = {**POLICE, "request_id": "log-1",
            "subject": {**POLICE["subject"], "family": "Logsecretname", "given": "Zed"}}
    sec.agency.post("/v1/requests", json=body)
    sec.agency.post("/v1/requests", json={**body, "made_on": "not-a-date"})
    TestClient(sec.app).post("/v1/session", json={"username": "rita", "password": "wrong-pw"})

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError(f"internal failure mentioning {sec.token} and Logsecretname")

    monkeypatch.setattr("safehaven.api.agencies.agency_page", boom)
    # Through the ASGI interface itself: an exception escaping the app is what uvicorn
    # would log with its traceback (and its message).  It must not escape.
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=sec.app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     headers={"Authorization": f"Bearer {sec.token}"}) as c:
            return await c.get("/v1/requests")

    r = asyncio.run(call())
    assert r.status_code == 500 and r.json() == {"error": "internal error", "problems": []}
    assert r.headers["x-content-type-options"] == "nosniff"
    text_logged = "\n".join(f"{rec.getMessage()} {rec.exc_text or ''}"
                            for rec in caplog.records)
    for secret in (sec.token, sec.csrf, PASSWORD, "wrong-pw", "Logsecretname", "1975-02-14",
                   "9434765919"):
        assert secret not in text_logged, secret
    assert "unhandled RuntimeError" in text_logged  # the error itself is still logged
