"""The data subject portal: ask for a code, prove who you are, see every request about you."""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from safehaven.api import auth
from safehaven.api.context import ApiConfig, config
from safehaven.api.errors import ApiError, errors
from safehaven.api.people import SessionInfo, info, set_cookie
from safehaven.domain.request import _check_nhs_number
from safehaven.service import accounts, subjects
from safehaven.service.accounts import WebSession
from safehaven.store.db import transaction

router = APIRouter(prefix="/v1/subject", tags=["data subjects"])
Cfg = Annotated[ApiConfig, Depends(config)]
log = logging.getLogger("safehaven.api")

NhsNumber = Annotated[str, Field(pattern=r"^[0-9]{10}$"), AfterValidator(_check_nhs_number)]


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nhs_number: NhsNumber
    birthdate: date


class CodeLogin(CodeRequest):
    code: Annotated[str, Field(pattern=r"^[0-9]{6}$")]


class CodeSent(BaseModel):
    status: str
    channel: str


class AboutMe(BaseModel):
    requests: list[dict[str, Any]]


@router.post("/code", status_code=202, response_model=CodeSent, responses=errors(429),
             summary="Send a one-time code through the notification channel")
async def send_code(body: CodeRequest, cfg: Cfg) -> dict[str, Any]:
    def work() -> str:
        with transaction(cfg.factory) as session:
            try:
                return subjects.issue_code(session, body.nhs_number, body.birthdate,
                                           at=cfg.clock())
            except subjects.TooManyCodesError as exc:
                raise ApiError(429, "too many codes", [str(exc)]) from None

    code = await run_in_threadpool(work)
    if cfg.print_codes:
        # Demo only: stands in for the letter.  The code alone identifies nobody.
        print(f"[safehaven demo] subject access code: {code}", flush=True)
    return {"status": "sent", "channel": "letter"}


@router.post("/session", response_model=SessionInfo, responses=errors(),
             summary="Prove who you are with the code; sets the session cookie")
async def subject_login(body: CodeLogin, response: Response, cfg: Cfg) -> dict[str, Any]:
    def work() -> WebSession | None:
        with transaction(cfg.factory) as session:
            now = cfg.clock()
            if not subjects.verify_code(session, body.nhs_number, body.birthdate, body.code,
                                        at=now):
                return None
            return accounts.start_session(session, role="subject", at=now,
                                          subject_nhs_number=body.nhs_number)

    web = await run_in_threadpool(work)
    if web is None:  # the failed attempt was counted (committed) above
        raise ApiError(401, "wrong, used or expired code")
    set_cookie(response, cfg, web)
    return info(web)


@router.get("/requests", response_model=AboutMe, responses=errors(),
            summary="Every finished request about you: who, when, why, outcome, fields given")
def about_me(cfg: Cfg, creds: auth.Creds) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        web = auth.person(session, cfg, creds, auth.SUBJECT)
        assert web.subject_nhs_number is not None
        return {"requests": subjects.requests_about(session, web.subject_nhs_number,
                                                    cfg.agreements)}
