"""Hardening that wraps the whole app: security headers, per-agency rate limits, a clean
503 when the database cannot take a write (locked, disk full), and a 422 (not a 500) for a
CSV file the csv module cannot split.

Kept out of the route modules on purpose: these are properties of *every* response, and a
route added tomorrow must get them without remembering to.  All three are plain ASGI (no
``BaseHTTPMiddleware``), so streamed bulk responses stay streamed.

Rate limits are token buckets **in this process's memory**.  ``safehaven serve`` runs one
process, so the limit is exact; behind several workers each worker keeps its own buckets and
an agency can get up to ``workers x rate``.  That is documented, not hidden
(``docs/threat-model.md``, T-AG-3): the volume cap per month, which is the legal limit, is
enforced in the database and is exact whatever the number of workers.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("safehaven.api")

RATE_ENV = "SAFEHAVEN_AGENCY_RATE"
BURST_ENV = "SAFEHAVEN_AGENCY_BURST"
#: Sustained requests per second per agency token, and the burst allowed above it.  The
#: default is a ceiling against one agency starving the others (the server does a few
#: hundred writes a second), not a policy figure: set ``SAFEHAVEN_AGENCY_RATE`` to what each
#: agency's agreement implies (the DfE MoU's 1,500 a month needs far less than 1/s).
DEFAULT_RATE = 300.0
DEFAULT_BURST = 600.0
#: A bulk upload does up to 10,000 rows of work: it costs more than one poll.
BULK_COST = 20.0

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
#: FastAPI's interactive docs load their script from a CDN and start it inline.
DOCS_CSP = ("default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src https://cdn.jsdelivr.net; img-src https://fastapi.tiangolo.com data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")
DOCS_PATHS = ("/docs", "/redoc")


def security_headers(path: str, content_type: str, *, https: bool) -> list[tuple[bytes, bytes]]:
    """Headers for one response.  Why each:

    * ``nosniff``: a JSON body holding ``<script>`` in a name is never run as HTML;
    * CSP ``default-src 'none'`` on API responses, a same-origin policy on pages, and
      ``frame-ancestors 'none'`` everywhere (with ``X-Frame-Options`` for old browsers):
      no clickjacking of a reviewer's "approve" button;
    * ``Cache-Control: no-store`` on ``/v1``: disclosures and queues carry personal data
      and must not sit in a shared or browser cache;
    * ``Referrer-Policy: no-referrer``: request ids in URLs do not leak to other sites;
    * HSTS only when cookies are HTTPS-only (i.e. the deployment really is HTTPS).
    """
    if path.startswith(DOCS_PATHS):
        csp = DOCS_CSP
    elif content_type.startswith("text/html"):
        csp = PAGE_CSP
    else:
        csp = API_CSP
    headers = [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    ]
    if path.startswith("/v1"):
        headers.append((b"cache-control", b"no-store"))
    if https:
        headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return headers


class SecurityHeaders:
    """ASGI middleware adding :func:`security_headers` to every response."""

    def __init__(self, app: ASGIApp, *, https: Callable[[], bool]) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                ctype = next((v.decode("latin-1") for k, v in raw
                              if k.lower() == b"content-type"), "")
                for k, v in security_headers(path, ctype, https=self.https()):
                    if k not in present:
                        raw.append((k, v))
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by credential; thread-safe; bounded in memory (LRU)."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float:
        """0.0 if allowed (tokens taken), else the seconds to wait before retrying."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(key, None) or Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.rate


def _float_env(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def _bearer(scope: Scope) -> str | None:
    for k, v in scope.get("headers", []):
        if k == b"authorization":
            text = v.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip() or None
    return None


class AgencyRateLimit:
    """ASGI middleware: one bucket per agency token; 429 with ``Retry-After`` when empty.

    The key is the token's sha256 (the same digest the store indexes), so the limiter never
    holds a token in memory.  A token is not checked here (the route does that); a made-up
    token only ever drains its own bucket (guessing a 256-bit token is not a rate problem).
    People with cookie sessions are not limited here: password guessing is slowed by
    argon2 and subject codes by their own attempt counter (``api/subjects.py``).
    """

    def __init__(self, app: ASGIApp, *, agency: RateLimiter) -> None:
        self.app = app
        self.agency = agency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/") or path == "/v1/health":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        cost = BULK_COST if path == "/v1/requests/bulk" else 1.0
        if token is None:
            await self.app(scope, receive, send)
            return
        wait = self.agency.take(hashlib.sha256(token.encode("utf-8", "replace")).hexdigest(),
                                cost)
        if wait > 0:
            response = JSONResponse(
                {"error": "too many requests",
                 "problems": [f"(rate): slow down; retry after {max(wait, 0.01):.2f} s"]},
                429, headers={"Retry-After": str(max(1, round(wait + 0.5)))})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ContainErrors:
    """ASGI middleware: an unexpected exception becomes the usual 500 here, and stops here.

    Why: Starlette's outermost ``ServerErrorMiddleware`` answers 500 through our handler
    and then *re-raises*, so that uvicorn logs "Exception in ASGI application" with the full
    traceback, and an exception's message can quote personal data (SQLAlchemy's
    ``IntegrityError`` prints the bound parameters: names, dates of birth).  Stopping the
    exception inside the app means only method, path and exception type are logged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.error("unhandled %s on %s %s", type(exc).__name__, scope.get("method"),
                      scope.get("path"))
            if not started:
                response = JSONResponse({"error": "internal error", "problems": []}, 500)
                await response(scope, receive, send)


def install(app: FastAPI, *, https: Callable[[], bool] | None = None,
            rate: float | None = None, burst: float | None = None) -> None:
    """Add the middleware and the 503 handler to ``app`` (called by ``create_app``)."""

    @app.exception_handler(OperationalError)
    async def _storage(request: Request, exc: OperationalError) -> JSONResponse:
        # The message is SQLite's or PostgreSQL's ("database is locked", "disk I/O error"),
        # never request data; it is still kept out of the response.
        log.error("storage unavailable (%s) on %s %s", type(exc.orig).__name__,
                  request.method, request.url.path)
        return JSONResponse(
            {"error": "storage unavailable", "problems": ["(storage): nothing was stored; "
                                                          "retry later"]},
            503, headers={"Retry-After": "5"})

    @app.exception_handler(csv.Error)
    async def _bad_csv(_: Request, exc: csv.Error) -> JSONResponse:
        # A bulk CSV the reader cannot split (e.g. a cell over the csv module's 128 KiB
        # field limit) was a 500; it is the uploader's input, so it is a 422.  The csv
        # module's message names the fault, never the cell's content.
        return JSONResponse({"error": "invalid input",
                             "problems": [f"(body): not valid CSV: {exc}"]}, 422)

    app.add_middleware(ContainErrors)  # innermost: its 500 still gets the headers below
    agency = RateLimiter(rate or _float_env(RATE_ENV, DEFAULT_RATE),
                         burst or _float_env(BURST_ENV, DEFAULT_BURST))
    app.add_middleware(AgencyRateLimit, agency=agency)

    def _https() -> bool:
        cfg: Any = getattr(app.state, "config", None)
        return bool(getattr(cfg, "secure_cookies", False))

    app.add_middleware(SecurityHeaders, https=https or _https)
