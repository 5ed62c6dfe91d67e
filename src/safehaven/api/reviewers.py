"""Reviewers: the queue of requests awaiting a human, and the verdict with its reason.

An approval that completes the review carries the request on at once (match, disclose,
notify or record an exemption) in the same transaction: a reviewer's "yes" and what it
caused are one ledger-recorded unit, never half done.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from safehaven.api import auth
from safehaven.api.context import ApiConfig, config
from safehaven.api.errors import ApiError, errors, not_found, unprocessable
from safehaven.api.views import reviewer_view, reviewer_views
from safehaven.domain.lifecycle import IllegalTransition
from safehaven.service import notifications, tracing
from safehaven.service import requests as svc
from safehaven.store.db import transaction

router = APIRouter(prefix="/v1/review", tags=["reviewers"])
Cfg = Annotated[ApiConfig, Depends(config)]


class Exemption(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exemption_id: Annotated[str, Field(min_length=1, max_length=80)]
    reason: Annotated[str, Field(min_length=1, max_length=4000)]
    review_on: date


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["approve", "refuse"]
    reason: Annotated[str, Field(min_length=1, max_length=4000)]
    exemption: Exemption | None = None


class VerdictResult(BaseModel):
    id: str
    state: str
    approvals_needed: int


class ExemptionReview(BaseModel):
    """Keep an exemption from notice for longer (``renew``, with a new ``review_on``) or
    end it (``lift``: the person is sent the notice now).  A written reason either way."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["renew", "lift"]
    reason: Annotated[str, Field(min_length=1, max_length=4000)]
    review_on: date | None = None


class ExemptionReviewResult(BaseModel):
    id: str
    state: str
    review_on: str | None


class Queue(BaseModel):
    requests: list[dict[str, Any]]


class Overdue(BaseModel):
    exemptions: list[dict[str, Any]]


@router.get("/queue", response_model=Queue, responses=errors(),
            summary="Requests waiting for a reviewer, oldest first, with the engine's reasons")
def queue(
    cfg: Cfg, creds: auth.Creds,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        web = auth.person(session, cfg, creds, auth.REVIEWER)
        rows = list(session.execute(svc.review_queue(limit)).scalars())
        items = reviewer_views(session, rows)
        for view in items:
            view["reviewed_by_me"] = any(r["reviewer"] == web.username for r in view["reviews"])
        return {"requests": items}


@router.get("/requests/{request_id}", response_model=dict[str, Any], responses=errors(),
            summary="One request in full: body, decision, reviews, lifecycle")
def show(request_id: str, cfg: Cfg, creds: auth.Creds) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        auth.person(session, cfg, creds, auth.REVIEWER)
        try:
            row = svc.get_request(session, request_id)
        except svc.NotFoundError:
            raise not_found() from None
        return reviewer_view(session, row)


def _verdict(session: Session, cfg: ApiConfig, request_id: str, body: Verdict,
             creds: auth.Credentials) -> dict[str, Any]:
    # Through the group-commit writer, like every other write on the hot paths (see
    # ``api/writer.py``): the verdict and the trace it may trigger commit together.
    web = auth.person(session, cfg, creds, auth.REVIEWER, unsafe=True)
    assert web.username is not None
    now = cfg.clock()
    try:
        state = svc.review(session, request_id, reviewer=web.username,
                           verdict=body.verdict, reason=body.reason, at=now)
        choice = None
        if body.exemption is not None:
            if body.verdict != "approve":
                raise unprocessable(["exemption: only with an approval"])
            choice = tracing.ExemptionChoice(body.exemption.exemption_id,
                                             body.exemption.reason, body.exemption.review_on)
        state = tracing.complete(session, request_id, agreements=cfg.agreements,
                                 matcher=cfg.matcher, at=now, actor=web.username,
                                 exemption=choice)
    except svc.NotFoundError:
        raise not_found() from None
    except svc.NotificationError as exc:
        msg = str(exc)
        raise unprocessable([msg if msg.startswith("exemption") else f"exemption.{msg}"]
                            ) from None
    except (svc.ReviewError, IllegalTransition) as exc:
        raise ApiError(409, "cannot review this request now", [str(exc)]) from None
    row = svc.get_request(session, request_id)
    return {"id": request_id, "state": state,
            "approvals_needed": svc.approvals_needed(row)}


@router.post("/requests/{request_id}/verdict", response_model=VerdictResult,
             responses=errors(409), summary="Approve or refuse, with a written reason "
             "(needs X-CSRF-Token)")
async def verdict(
    request_id: str, body: Verdict, cfg: Cfg, creds: auth.Creds
) -> dict[str, Any]:
    if not body.reason.strip():
        raise unprocessable(["reason: a written reason is required for every review"])

    return await cfg.write(_verdict, request_id, body, creds)


@router.get("/exemptions/overdue", response_model=Overdue, responses=errors(),
            summary="Exemptions from notice whose review date has passed")
def overdue(cfg: Cfg, creds: auth.Creds) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        auth.person(session, cfg, creds, auth.REVIEWER)
        return {"exemptions": notifications.overdue_exemptions(session, cfg.clock().date())}


def _review_exemption(session: Session, cfg: ApiConfig, request_id: str, body: ExemptionReview,
                      creds: auth.Credentials) -> dict[str, Any]:
    web = auth.person(session, cfg, creds, auth.REVIEWER, unsafe=True)
    assert web.username is not None
    try:
        return notifications.review_exemption(
            session, request_id, cfg.agreements, action=body.action, reason=body.reason,
            review_on=body.review_on, actor=web.username, at=cfg.clock())
    except svc.NotFoundError:
        raise not_found() from None
    except svc.NotificationError as exc:
        msg = str(exc)
        if msg.startswith("state:"):
            raise ApiError(409, "no exemption to review", [msg]) from None
        raise unprocessable([msg]) from None


@router.post("/exemptions/{request_id}", response_model=ExemptionReviewResult,
             responses=errors(409),
             summary="Renew or lift an exemption from notice, with a written reason "
             "(needs X-CSRF-Token)")
async def review_exemption(
    request_id: str, body: ExemptionReview, cfg: Cfg, creds: auth.Creds
) -> dict[str, Any]:
    if not body.reason.strip():
        raise unprocessable(["reason: a written reason is required"])

    return await cfg.write(_review_exemption, request_id, body, creds)
