"""Requesting agencies: submit one request or a bulk file, poll outcomes, status checks.

Every acknowledgement is sent after the commit that makes it true: a 201 means the request,
its decision and its ledger entries are on disk; in a bulk upload each result line is
written only after the batch holding that row has committed, so whatever a client has read
survives a crash of the server.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from safehaven.api import auth
from safehaven.api.body import read_json_object, read_limited, require_type, tracing_request
from safehaven.api.context import ApiConfig, config
from safehaven.api.errors import ApiError, errors, not_found, unprocessable
from safehaven.api.responses import FastJSONResponse
from safehaven.api.views import agency_page, agency_request, agency_view_of
from safehaven.domain.request import RequestFormatError, TracingRequest, parse_request_obj
from safehaven.service import requests as svc
from safehaven.service import subjects, tracing
from safehaven.service.accounts import AgencyPrincipal
from safehaven.service.settings import firewall_guess
from safehaven.store.db import read_connection

router = APIRouter(prefix="/v1", tags=["agencies"])
Cfg = Annotated[ApiConfig, Depends(config)]

NDJSON = "application/x-ndjson"
BULK_TYPES = (NDJSON, "application/jsonl", "application/json-lines", "text/csv")


class Accepted(BaseModel):
    id: str
    request_id: str | None
    state: str
    outcome: str
    decision: dict[str, Any]


class StatusAnswer(BaseModel):
    id: str
    request_id: str | None
    state: str
    answer: str


class AgencyRequestView(BaseModel):
    id: str
    request_id: str | None
    requester: str
    agreement: str
    purpose: str
    made_on: str
    received_at: str
    state: str
    outcome: str | None
    decision: dict[str, Any] | None
    match: dict[str, Any] | None
    disclosure: dict[str, Any] | None


class RequestList(BaseModel):
    requests: list[AgencyRequestView]


@dataclass(frozen=True)
class Submitted:
    result: svc.SubmitResult
    state: str
    request_key: str | None


def _check_scope(principal: AgencyPrincipal, request: TracingRequest) -> None:
    auth.check_scope(principal, request.requester, request.agreement)


def prepare_one(cfg: ApiConfig, principal: AgencyPrincipal,
                request: TracingRequest) -> svc.Prepared:
    """Scope-check and do the pure part of a submit, before the writer (see
    ``service.requests.Prepared``)."""
    _check_scope(principal, request)
    return svc.prepare(request, cfg.agreements, received_at=cfg.clock(),
                       firewall_on=firewall_guess())


def submit_one(
    session: Session, cfg: ApiConfig, principal: AgencyPrincipal, request: TracingRequest,
    prepared: svc.Prepared | None = None,
) -> Submitted:
    """Scope-check, submit, and finish at once what needs no human (e.g. status checks)."""
    _check_scope(principal, request)
    now = prepared.received_at if prepared is not None else cfg.clock()
    try:
        result = svc.submit(session, request, cfg.agreements, received_at=now,
                            prepared=prepared)
    except svc.IdempotencyConflictError as exc:
        raise ApiError(409, "idempotency conflict", [str(exc)]) from None
    state = result.state
    if result.created:
        if request.subject.nhs_number:
            subjects.link_new(session, result.row_id, request.subject.nhs_number,
                              source="request")
        if state == "approved":
            state = tracing.complete(
                session, result.public_id, agreements=cfg.agreements, matcher=cfg.matcher,
                at=now, actor=svc.ENGINE_ACTOR,
            )
    else:
        state = svc.get_request(session, result.public_id).state
    return Submitted(result, state, request.request_id)


def _accepted(s: Submitted) -> dict[str, Any]:
    return {"id": s.result.public_id, "request_id": s.request_key, "state": s.state,
            "outcome": s.result.outcome, "decision": s.result.decision}


REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}},
    }
}


@router.post(
    "/requests",
    status_code=201,
    response_model=Accepted,
    responses={200: {"model": Accepted, "description": "Already received (same request_id "
                     "and body): the stored result"}, **errors(409, 413, 415)},
    openapi_extra=REQUEST_BODY,
    summary="Submit one request (format safehaven.request/v1)",
)
async def submit_request(request: Request, cfg: Cfg, creds: auth.Creds) -> FastJSONResponse:
    obj = await read_json_object(request, cfg.max_body_bytes)

    def before() -> tuple[AgencyPrincipal, TracingRequest, svc.Prepared]:
        # Outside the writer: authenticate (a snapshot read), parse and decide.  A token
        # revoked in the next few milliseconds still covers a request received before.
        with read_connection(cfg.reader) as conn:
            principal = auth.agency(conn, cfg, creds)
        req = tracing_request(obj, principal.agency)
        return principal, req, prepare_one(cfg, principal, req)

    principal, req, prepared = await run_in_threadpool(before)
    done = await cfg.write(submit_one, principal, req, prepared)
    # Encoded here, not through ``response_model``: the body is built by our own code from
    # the stored decision, and re-validating a 17-rule explanation on the hottest route
    # cost as much as storing it.  The model still documents the response in OpenAPI and
    # the API tests check responses against it.
    return FastJSONResponse(_accepted(done), status_code=201 if done.result.created else 200,
                            headers={"Location": f"/v1/requests/{done.result.public_id}"})


def _status_check(session: Session, cfg: ApiConfig, obj: dict[str, Any],
                  creds: auth.Credentials) -> tuple[Submitted, str]:
    principal = auth.agency(session, cfg, creds)
    req = tracing_request(obj, principal.agency)
    problems = []
    if req.purpose != "status-check":
        problems.append("purpose: a status check must have purpose 'status-check'")
    if req.fields != ["entitlement"]:
        problems.append("fields: a status check asks for ['entitlement'] only")
    if problems:
        raise unprocessable(problems)
    done = submit_one(session, cfg, principal, req)
    return done, tracing.status_answer(session, done.result.public_id)


@router.post(
    "/status-checks",
    status_code=201,
    response_model=StatusAnswer,
    responses={200: {"model": StatusAnswer, "description": "Already received"},
               **errors(409, 413, 415)},
    openapi_extra=REQUEST_BODY,
    summary="Ask whether a person is entitled to a service: entitled | not_entitled | unknown",
)
async def status_check(
    request: Request, response: Response, cfg: Cfg, creds: auth.Creds
) -> dict[str, Any]:
    obj = await read_json_object(request, cfg.max_body_bytes)
    done, answer = await cfg.write(_status_check, obj, creds)
    response.status_code = 201 if done.result.created else 200
    response.headers["Location"] = f"/v1/requests/{done.result.public_id}"
    return {"id": done.result.public_id, "request_id": done.request_key, "state": done.state,
            "answer": answer}


@router.get("/requests/{request_id}", response_model=AgencyRequestView, responses=errors(),
            summary="Poll one of your requests")
def get_request(request_id: str, cfg: Cfg, creds: auth.Creds) -> FastJSONResponse:
    with read_connection(cfg.reader) as conn:
        principal = auth.agency(conn, cfg, creds)
        # One query for the request, its decision, match and disclosure (``api/views.py``).
        row = agency_request(conn, request_id)
        if row is None or row.requester != principal.agency:
            raise not_found()
        return FastJSONResponse(agency_view_of(row))


@router.get("/requests", response_model=RequestList, responses=errors(),
            summary="Your requests, newest first")
def list_requests(
    cfg: Cfg,
    creds: auth.Creds,
    state: Annotated[str | None, Query(max_length=20, pattern=r"^[a-z_]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FastJSONResponse:
    with read_connection(cfg.reader) as conn:
        principal = auth.agency(conn, cfg, creds)
        page = agency_page(conn, principal.agency, state=state, limit=limit)
        return FastJSONResponse({"requests": page})


# --- bulk ------------------------------------------------------------------------------

CSV_COLUMNS = {
    "request_id", "requester", "agreement", "purpose", "made_on", "fields",
    "subject.family", "subject.given", "subject.gender", "subject.birthdate",
    "subject.address-postalcode", "subject.nhs_number", "subject.known_address.line",
    "subject.known_address.postalcode", "grounds.offence", "grounds.offence_date",
    "grounds.serious_crime", "grounds.deportation_considered", "grounds.welfare_concern",
    "grounds.other_attempts", "grounds.lost_contact", "grounds.believed_in_uk",
    "grounds.application_reference",
}
CSV_BOOLEANS = {"grounds.serious_crime", "grounds.deportation_considered",
                "grounds.lost_contact", "grounds.believed_in_uk"}
CSV_LISTS = {"fields", "grounds.other_attempts"}


def _csv_row(row: dict[str, str]) -> dict[str, Any] | list[str]:
    """One CSV row as a request object: dotted columns nest, ';' separates list items."""
    out: dict[str, Any] = {}
    problems: list[str] = []
    for column, raw in row.items():
        value = (raw or "").strip()
        if not value:
            continue
        parsed: Any = value
        if column in CSV_BOOLEANS:
            if value.lower() not in ("true", "false"):
                problems.append(f"{column}: must be true or false")
                continue
            parsed = value.lower() == "true"
        elif column in CSV_LISTS:
            parsed = [v.strip() for v in value.split(";") if v.strip()]
        target = out
        *parents, last = column.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[last] = parsed
    return problems or out


def parse_bulk(raw: bytes, kind: str, max_rows: int) -> list[dict[str, Any] | list[str]]:
    """Split a bulk file into row objects (or a row's problems); file-level faults raise."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise unprocessable(["(body): not valid UTF-8"]) from None
    rows: list[dict[str, Any] | list[str]] = []
    if kind == "text/csv":
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if not header:
            raise unprocessable(["(header): the CSV file has no header row"])
        if unknown:
            raise unprocessable([f"(header).{c}: unknown column; known: {sorted(CSV_COLUMNS)}"
                                 for c in unknown])
        for record in reader:
            if len(rows) >= max_rows:
                raise ApiError(413, "too many rows", [f"(body): more than {max_rows} rows"])
            if None in record:
                rows.append(["(row): more cells than header columns"])
                continue
            rows.append(_csv_row(record))
    else:
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            if len(rows) >= max_rows:
                raise ApiError(413, "too many rows", [f"(body): more than {max_rows} rows"])
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append([f"(line {line_no}): malformed JSON at column {exc.colno}: {exc.msg}"])
                continue
            rows.append(value if isinstance(value, dict)
                        else [f"(line {line_no}): each line must be a JSON object"])
    if not rows:
        raise unprocessable(["(body): the file has no rows"])
    return rows


Row = dict[str, Any] | tuple[int, TracingRequest, svc.Prepared]


def _prepare_row(
    cfg: ApiConfig, principal: AgencyPrincipal, n: int, item: dict[str, Any] | list[str]
) -> Row:
    """A bulk row parsed, scope-checked and prepared, or its result if it fails that."""
    if isinstance(item, list):
        return {"row": n, "status": 422, "problems": item}
    if "requester" not in item:
        item = {**item, "requester": principal.agency}
    try:
        req = parse_request_obj(item)
    except RequestFormatError as exc:
        return {"row": n, "status": 422, "problems": exc.problems}
    try:
        return n, req, prepare_one(cfg, principal, req)
    except ApiError as exc:
        return {"row": n, "status": exc.status, "problems": exc.problems or [exc.error]}


def _row_result(session: Session, cfg: ApiConfig, principal: AgencyPrincipal,
                row: Row) -> dict[str, Any]:
    if isinstance(row, dict):
        return row
    n, req, prepared = row
    # No savepoint per row: the only refusals here (scope, an idempotency conflict) are
    # raised before the row writes anything, and anything unexpected fails the whole
    # batch, whose savepoint in the writer rolls it back and answers 503 for each row.
    try:
        done = submit_one(session, cfg, principal, req, prepared)
    except ApiError as exc:
        return {"row": n, "status": exc.status, "problems": exc.problems or [exc.error]}
    return {"row": n, "status": 201 if done.result.created else 200, **_accepted(done)}


def _bulk_unit(session: Session, cfg: ApiConfig, principal: AgencyPrincipal,
               ready: list[Row]) -> list[dict[str, Any]]:
    return [_row_result(session, cfg, principal, row) for row in ready]


async def _bulk_lines(
    cfg: ApiConfig, principal: AgencyPrincipal, rows: list[dict[str, Any] | list[str]]
) -> AsyncIterator[bytes]:
    """Per-row results, each line sent only after the batch holding its row has committed.

    Each batch is one unit of the group-commit writer, the same queue single submits go
    through: a second writer beside it would meet it at SQLite's lock, whose busy handler
    sleeps in growing steps, and both would stall.  Batches are small (``bulk_batch``) so
    that a 10,000-row upload interleaves with other agencies' single requests instead of
    holding the writer for seconds.
    """
    counts = {"created": 0, "replayed": 0, "rejected": 0}
    size = max(1, cfg.bulk_batch)
    for start in range(0, len(rows), size):
        batch = rows[start:start + size]
        # Parsed and decided in the thread pool (not on the event loop, not in the writer).
        ready = await run_in_threadpool(
            lambda start=start, batch=batch: [  # type: ignore[misc]
                _prepare_row(cfg, principal, start + i + 1, item)
                for i, item in enumerate(batch)])

        try:
            results = await cfg.write(_bulk_unit, principal, ready)
        except Exception:
            # Nothing in this batch was committed; say so row by row and stop.
            for i in range(len(batch)):
                yield (json.dumps({"row": start + i + 1, "status": 503,
                                   "problems": ["(row): not stored; resubmit"]}) + "\n").encode()
            return
        for r in results:
            key = {201: "created", 200: "replayed"}.get(r["status"], "rejected")
            counts[key] += 1
            yield (json.dumps(r) + "\n").encode()
    yield (json.dumps({"summary": {"rows": len(rows), **counts}}) + "\n").encode()


@router.post(
    "/requests/bulk",
    responses={
        200: {"description": "One JSON line per row, written after that row is committed, "
              "then a summary line", "content": {NDJSON: {"schema": {"type": "string"}}}},
        **errors(413, 415),
    },
    openapi_extra={"requestBody": {"required": True, "content": {
        NDJSON: {"schema": {"type": "string"}},
        "text/csv": {"schema": {"type": "string"}},
    }}},
    summary="Submit up to 10,000 requests as JSON lines or CSV; per-row results",
)
async def submit_bulk(request: Request, cfg: Cfg, creds: auth.Creds) -> StreamingResponse:
    kind = require_type(request, BULK_TYPES)

    def authenticate() -> AgencyPrincipal:
        with read_connection(cfg.reader) as conn:
            return auth.agency(conn, cfg, creds)

    principal = await run_in_threadpool(authenticate)
    raw = await read_limited(request, cfg.max_bulk_bytes)
    rows = parse_bulk(raw, kind, cfg.max_bulk_rows)
    return StreamingResponse(_bulk_lines(cfg, principal, rows), media_type=NDJSON)
