"""Aggregate releases over HTTP: counts under disclosure control, never a person.

An agency asks (``POST /v1/aggregates``, request format ``safehaven.aggregate/v1``) and gets
the decision with every rule explained and, if released, the protected table: every value
0, at least the agreement's minimum cell, or ``"suppressed"`` (secondary suppression keeps
a hidden cell from being solved from the margins).  ``Accept: text/csv`` or
``?format=csv`` gives the table as CSV.  The row and its ledger entry are committed before
the answer is sent.

Where the agreement asks for review, the table is computed on receipt and held; reviewers
see it in their queue (``/v1/review/aggregates``) and approve or refuse with a written
reason, two different people under four-eyes.  Oversight reads every release, read-only
(``/v1/oversight/aggregates``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from safehaven.api import auth
from safehaven.api.body import read_json_object
from safehaven.api.context import ApiConfig, config
from safehaven.api.errors import ApiError, errors, not_found, unprocessable
from safehaven.domain.request import (
    AggregateRequest,
    RequestFormatError,
    parse_aggregate_request,
)
from safehaven.service import aggregates as svc
from safehaven.service.accounts import AgencyPrincipal
from safehaven.service.requests import IdempotencyConflictError, NotFoundError, ReviewError
from safehaven.store.db import transaction

router = APIRouter()
Cfg = Annotated[ApiConfig, Depends(config)]

CSV = "text/csv"
ReleaseId = Annotated[str, PathParam(max_length=64)]
Format = Annotated[
    Literal["json", "csv"] | None,
    Query(alias="format",
          description="`csv`: the released table as CSV (same as `Accept: text/csv`)"),
]
StateFilter = Annotated[Literal["refused", "in_review", "released"] | None, Query()]

# --- response models ------------------------------------------------------------------

Count = int | Literal["suppressed"]


class TableRow(BaseModel):
    label: str
    cells: dict[str, Count]
    total: Count


class Table(BaseModel):
    """Counts by the first dimension (rows) and the second (columns), with margins."""

    dimensions: list[str]
    rows: list[TableRow]
    column_totals: dict[str, Count]
    total: Count
    suppressed_cells: int


class AggregateRelease(BaseModel):
    id: str
    request_id: str | None
    requester: str
    agreement: str
    purpose: str
    made_on: str
    dimensions: list[str]
    received_at: str
    state: Literal["refused", "in_review", "released"]
    outcome: str
    released: bool
    approvals_needed: int
    decision: dict[str, Any]
    table: Table | None
    table_sha256: str | None


class AggregateList(BaseModel):
    releases: list[AggregateRelease]


class ReviewEntry(BaseModel):
    reviewer: str
    verdict: str
    reason: str
    at: str


class AggregateReview(AggregateRelease):
    """The release in full, with the table a reviewer is asked to approve."""

    body: dict[str, Any]
    reviews: list[ReviewEntry]
    reviewed_by_me: bool | None = None


class AggregateQueue(BaseModel):
    releases: list[AggregateReview]


class AggregateVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["approve", "refuse"]
    reason: Annotated[str, Field(min_length=1, max_length=4000)]


class AggregateVerdictResult(BaseModel):
    id: str
    state: str
    approvals_needed: int


def _request_schema() -> dict[str, Any]:
    schema = AggregateRequest.model_json_schema(by_alias=True)
    # The token says who is asking: ``requester`` may be left out (and if given must match).
    schema["required"] = [f for f in schema.get("required", []) if f != "requester"]
    return schema


AGGREGATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _request_schema()}},
    }
}
CSV_CONTENT = {CSV: {"schema": {"type": "string"}}}


# --- helpers --------------------------------------------------------------------------


def wants_csv(request: Request, fmt: str | None) -> bool:
    """``?format=`` wins; otherwise CSV only if ``Accept`` names ``text/csv`` at least as
    high as JSON (``*/*`` and no header mean JSON)."""
    if fmt is not None:
        return fmt == "csv"
    best = {"csv": 0.0, "json": 0.0}
    for part in request.headers.get("accept", "").split(","):
        media, *params = [p.strip() for p in part.split(";")]
        weight = 1.0
        for p in params:
            if p.replace(" ", "").startswith("q="):
                try:
                    weight = float(p.split("=", 1)[1])
                except ValueError:
                    weight = 0.0
        media = media.lower()
        if media == CSV:
            best["csv"] = max(best["csv"], weight)
        elif media in ("application/json", "application/*", "*/*"):
            best["json"] = max(best["json"], weight)
    return best["csv"] > 0 and best["csv"] >= best["json"]


def _csv_response(view: dict[str, Any], status: int) -> Response:
    return Response(
        svc.table_csv(view["table"]),
        status_code=status,
        media_type=f"{CSV}; charset=utf-8",
        headers={
            "Location": f"/v1/aggregates/{view['id']}",
            "Content-Disposition": f'attachment; filename="aggregate-{view["id"]}.csv"',
            "X-Safehaven-State": view["state"],
        },
    )


def _parse(obj: dict[str, Any], agency: str) -> AggregateRequest:
    if "requester" not in obj:
        obj = {**obj, "requester": agency}
    try:
        return parse_aggregate_request(json.dumps(obj))
    except RequestFormatError as exc:
        raise unprocessable(exc.problems) from None


def _check_scope(principal: AgencyPrincipal, request: AggregateRequest) -> None:
    """The same scope rule as ``POST /v1/requests``: your own name, your token's agreements."""
    auth.check_scope(principal, request.requester, request.agreement)


# --- requesting agencies --------------------------------------------------------------


def _submit_aggregate(session: Session, cfg: ApiConfig, obj: dict[str, Any],
                      creds: auth.Credentials) -> tuple[dict[str, Any], bool]:
    principal = auth.agency(session, cfg, creds)
    req = _parse(obj, principal.agency)
    _check_scope(principal, req)
    try:
        done = svc.submit_aggregate(session, req, cfg.agreements, cfg.datasets,
                                    received_at=cfg.clock())
    except IdempotencyConflictError as exc:
        raise ApiError(409, "idempotency conflict", [str(exc)]) from None
    except svc.DatasetUnavailableError as exc:
        raise ApiError(503, "dataset unavailable; nothing was stored", [str(exc)]) from None
    return svc.release_view(done.row), done.created


@router.post(
    "/v1/aggregates",
    tags=["agencies"],
    status_code=201,
    response_model=AggregateRelease,
    responses={
        201: {"description": "Received, decided and stored: refused, held for review, or "
              "released with the protected table (as CSV if asked for and released)",
              "content": CSV_CONTENT},
        200: {"model": AggregateRelease, "description": "Already received (same request_id "
              "and body): the stored result", "content": CSV_CONTENT},
        **errors(409, 413, 415),
    },
    openapi_extra=AGGREGATE_BODY,
    summary="Ask for counts under disclosure control (format safehaven.aggregate/v1)",
)
async def submit_aggregate(
    request: Request, cfg: Cfg, creds: auth.Creds, fmt: Format = None
) -> Any:
    obj = await read_json_object(request, cfg.max_body_bytes)

    # Answered only after the writer has committed the row and its ledger entry.
    view, created = await cfg.write(_submit_aggregate, obj, creds)
    status = 201 if created else 200
    if view["table"] is not None and wants_csv(request, fmt):
        return _csv_response(view, status)
    return _json(view, status, {"Location": f"/v1/aggregates/{view['id']}"})


def _json(view: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    body = AggregateRelease.model_validate(view).model_dump_json()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


@router.get(
    "/v1/aggregates/{release_id}",
    tags=["agencies"],
    response_model=AggregateRelease,
    responses={200: {"content": CSV_CONTENT}, **errors(409)},
    summary="One of your aggregate releases again (CSV only once released)",
)
def get_aggregate(
    release_id: ReleaseId, request: Request, cfg: Cfg, creds: auth.Creds, fmt: Format = None
) -> Any:
    with transaction(cfg.reader) as session:
        principal = auth.agency(session, cfg, creds)
        try:
            row = svc.get_release(session, release_id)
        except NotFoundError:
            raise not_found("aggregate release") from None
        if row.requester != principal.agency:
            raise not_found("aggregate release")
        view = svc.release_view(row)
    if wants_csv(request, fmt):
        if view["table"] is None:
            raise ApiError(409, "no table released", [
                f"format: this release is {view['state']}; only a released table has a CSV form"
            ])
        return _csv_response(view, 200)
    return _json(view, 200)


@router.get(
    "/v1/aggregates",
    tags=["agencies"],
    response_model=AggregateList,
    responses=errors(),
    summary="Your aggregate releases, newest first",
)
def list_aggregates(
    cfg: Cfg, creds: auth.Creds, state: StateFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        principal = auth.agency(session, cfg, creds)
        rows = svc.list_releases(session, requester=principal.agency, state=state, limit=limit)
        return {"releases": [svc.release_view(r) for r in rows]}


# --- reviewers ------------------------------------------------------------------------


@router.get(
    "/v1/review/aggregates",
    tags=["reviewers"],
    response_model=AggregateQueue,
    responses=errors(),
    summary="Aggregate releases waiting for a reviewer, oldest first, with the table",
)
def review_queue(
    cfg: Cfg, creds: auth.Creds, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        web = auth.person(session, cfg, creds, auth.REVIEWER)
        items = []
        for row in svc.pending_releases(session, limit=limit):
            view = svc.review_view(row)
            view["reviewed_by_me"] = any(r["reviewer"] == web.username for r in view["reviews"])
            items.append(view)
        return {"releases": items}


@router.get(
    "/v1/review/aggregates/{release_id}",
    tags=["reviewers"],
    response_model=AggregateReview,
    responses=errors(),
    summary="One aggregate release in full: request, decision, table, reviews",
)
def review_show(release_id: ReleaseId, cfg: Cfg, creds: auth.Creds) -> dict[str, Any]:
    return _release_view(release_id, cfg, creds, auth.REVIEWER)


def _release_view(release_id: str, cfg: ApiConfig, creds: auth.Credentials,
                  roles: frozenset[str]) -> dict[str, Any]:
    """One release in full for a reviewer or an overseer (the same view, read-only)."""
    with transaction(cfg.reader) as session:
        auth.person(session, cfg, creds, roles)
        try:
            return svc.review_view(svc.get_release(session, release_id))
        except NotFoundError:
            raise not_found("aggregate release") from None


def _review_verdict(session: Session, cfg: ApiConfig, release_id: str, body: AggregateVerdict,
                    creds: auth.Credentials) -> dict[str, Any]:
    web = auth.person(session, cfg, creds, auth.REVIEWER, unsafe=True)
    assert web.username is not None
    try:
        row = svc.review_aggregate(session, release_id, reviewer=web.username,
                                   verdict=body.verdict, reason=body.reason,
                                   at=cfg.clock())
    except NotFoundError:
        raise not_found("aggregate release") from None
    except ReviewError as exc:
        raise ApiError(409, "cannot review this release now", [str(exc)]) from None
    return {"id": row.public_id, "state": row.state,
            "approvals_needed": svc.approvals_needed(row)}


@router.post(
    "/v1/review/aggregates/{release_id}/verdict",
    tags=["reviewers"],
    response_model=AggregateVerdictResult,
    responses=errors(409),
    summary="Approve or refuse an aggregate release, with a written reason "
    "(needs X-CSRF-Token)",
)
async def review_verdict(
    release_id: ReleaseId, body: AggregateVerdict, cfg: Cfg, creds: auth.Creds
) -> dict[str, Any]:
    if not body.reason.strip():
        raise unprocessable(["reason: a written reason is required for every review"])

    return await cfg.write(_review_verdict, release_id, body, creds)


# --- oversight ------------------------------------------------------------------------


@router.get(
    "/v1/oversight/aggregates",
    tags=["oversight"],
    response_model=AggregateQueue,
    responses=errors(),
    summary="Every aggregate release, newest first: decision, table, reviews (read-only)",
)
def oversight_list(
    cfg: Cfg, creds: auth.Creds, state: StateFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        auth.person(session, cfg, creds, auth.OVERSIGHT)
        rows = svc.list_releases(session, state=state, limit=limit)
        return {"releases": [svc.review_view(r) for r in rows]}


@router.get(
    "/v1/oversight/aggregates/{release_id}",
    tags=["oversight"],
    response_model=AggregateReview,
    responses=errors(),
    summary="One aggregate release in full: request, decision, table, reviews (read-only)",
)
def oversight_show(release_id: ReleaseId, cfg: Cfg, creds: auth.Creds) -> dict[str, Any]:
    return _release_view(release_id, cfg, creds, auth.OVERSIGHT)
