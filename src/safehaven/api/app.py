"""The FastAPI application: routers per role, one error shape, and an honest OpenAPI document.

``create_app`` takes everything from its :class:`ApiConfig` (no globals), so tests run the
real app against a throwaway database, and ``safehaven serve`` runs the same app under
uvicorn.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
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
    status: str
    version: str


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

    @app.get("/v1/health", response_model=Health, tags=["public"])
    async def health() -> dict[str, str]:  # async: no thread-pool hop for a constant
        return {"status": "ok", "version": version}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(request_schemas())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
