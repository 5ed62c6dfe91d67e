"""The FastAPI application: routers per role, one error shape, and an honest OpenAPI document.

``create_app`` takes everything from its :class:`ApiConfig` (no globals), so tests run the
real app against a throwaway database, and ``safehaven serve`` runs the same app under
uvicorn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from safehaven import __version__ as version
from safehaven.api import (
    agencies,
    aggregates,
    errors,
    hardening,
    oversight,
    people,
    reviewers,
    subjects,
)
from safehaven.api.context import ApiConfig
from safehaven.domain.request import TracingRequest
from safehaven.web import pages


class Health(BaseModel):
    #: ``ok``, or ``degraded`` when the register the matcher answers from is stale.
    status: str
    version: str
    #: ``current``: traces match against the register now in the workspace; ``stale``: a
    #: ``register import`` replaced it since this process loaded it or since the PostgreSQL
    #: index was built (restart, or ``safehaven register index``); ``unknown``: cannot tell
    #: (no register file on this host, a demo register, or an index without a digest).
    register_freshness: str = "unknown"


#: How long the health check reuses its answer about the register.
HEALTH_RECHECK_S = 5.0


def request_schemas() -> dict[str, Any]:
    """Request format v1 as OpenAPI components (the body our routes parse by hand)."""
    schema = TracingRequest.model_json_schema(
        by_alias=True, ref_template="#/components/schemas/{model}"
    )
    defs: dict[str, Any] = schema.pop("$defs", {})
    defs["Request"] = schema
    # POSTCODE_PATTERN is written without inline flags, so it is valid ECMA-262 as is.
    return defs


def create_app(cfg: ApiConfig) -> FastAPI:
    app = FastAPI(
        title="safehaven",
        version=version,
        description="A gateway between a register of people and the agencies that ask about "
        "them. Agencies use an API token (`Authorization: Bearer`); reviewers, oversight and "
        "data subjects a session cookie plus `X-CSRF-Token` on state-changing calls.",
        openapi_url="/openapi.json",
    )
    app.state.config = cfg
    errors.install(app)
    hardening.install(app)
    for module in (agencies, aggregates, people, reviewers, subjects, oversight):
        app.include_router(module.router)
    # Server-rendered pages (public report, agreements, ledger, reviewer desk, portal): a
    # skin over the same handlers, kept out of the OpenAPI document.
    pages.install(app)

    checked: dict[str, Any] = {"at": -math.inf, "value": "unknown"}

    @app.get("/v1/health", response_model=Health, tags=["public"])
    async def health() -> dict[str, str]:
        # Load balancers poll this: the register check (a stat, or a query to the
        # PostgreSQL index) runs at most every HEALTH_RECHECK_S, in the thread pool.
        freshness: Callable[[], str] | None = getattr(cfg.matcher, "freshness", None)
        if freshness is not None and time.monotonic() - checked["at"] > HEALTH_RECHECK_S:
            checked["value"] = await run_in_threadpool(freshness)
            checked["at"] = time.monotonic()
        register = str(checked["value"])
        return {"status": "degraded" if register == "stale" else "ok", "version": version,
                "register_freshness": register}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(request_schemas())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
