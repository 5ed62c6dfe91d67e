"""Logging in and out (reviewers and oversight readers): a session cookie plus a CSRF token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from safehaven.api import auth
from safehaven.api.context import ApiConfig, config
from safehaven.api.errors import ApiError, errors
from safehaven.service import accounts
from safehaven.service.accounts import WebSession
from safehaven.store.accounts import AccountRow
from safehaven.store.db import transaction

router = APIRouter(prefix="/v1", tags=["session"])
Cfg = Annotated[ApiConfig, Depends(config)]


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=1, max_length=80)]
    password: Annotated[str, Field(min_length=1, max_length=1000)]


class SessionInfo(BaseModel):
    role: str
    username: str | None
    csrf_token: str
    expires_at: str


def set_cookie(response: Response, cfg: ApiConfig, web: WebSession) -> None:
    response.set_cookie(
        auth.SESSION_COOKIE, web.token, httponly=True, samesite="strict",
        secure=cfg.secure_cookies, path="/v1",
        max_age=int((web.expires_at - cfg.clock()).total_seconds()),
    )


def info(web: WebSession) -> dict[str, Any]:
    return {"role": web.role, "username": web.username, "csrf_token": web.csrf_token,
            "expires_at": web.expires_at.isoformat()}


async def log_in(cfg: ApiConfig, username: str, password: str,
                 client: str) -> WebSession | None:
    """Check a reviewer's or overseer's password and open a session (API and pages).

    The password hash (argon2, tens of milliseconds by design) is checked in a read-only
    snapshot in the thread pool, never while holding the write lock every submit waits
    for; the session (or the failure, towards the account's lockout) is then written
    through the group-commit writer, which checks again that the account was not disabled
    in between.  Unknown user, wrong password, disabled or locked account: all ``None``.
    ``client`` (see :func:`client_address`) is what failures are counted against.
    """
    def check() -> accounts.LoginCheck:
        with transaction(cfg.reader) as session:
            return accounts.check_login(session, username, password, at=cfg.clock(),
                                        client=client)

    found = await run_in_threadpool(check)
    if found.account_id is None:
        if found.failed_account_id is not None:
            await cfg.write(_login_failed, found.failed_account_id, client)
        return None
    return await cfg.write(_login_succeeded, found.account_id, client)


def _login_failed(session: Session, cfg: ApiConfig, account_id: int, client: str) -> None:
    accounts.record_failed_login(session, account_id, at=cfg.clock(), client=client)


def _login_succeeded(session: Session, cfg: ApiConfig, account_id: int,
                     client: str) -> WebSession | None:
    account = session.get(AccountRow, account_id)
    if account is None or account.disabled_at is not None:
        return None
    accounts.login_succeeded(session, account, client=client)
    return accounts.start_session(session, role=account.role, account=account, at=cfg.clock())


def client_address(request: Request) -> str:
    """The address failed logins are counted against: the TCP peer, or the address a
    trusted reverse proxy reports (uvicorn's ``--forwarded-allow-ips``, see
    docs/operations.md); never a header an untrusted client can set."""
    return request.client.host[:64] if request.client and request.client.host else "unknown"


@router.post("/session", response_model=SessionInfo, responses=errors(),
             summary="Log in (reviewer or oversight); sets the session cookie")
async def login(body: Login, request: Request, response: Response, cfg: Cfg) -> dict[str, Any]:
    web = await log_in(cfg, body.username, body.password, client_address(request))
    if web is None:
        raise ApiError(401, "wrong username or password")
    set_cookie(response, cfg, web)
    return info(web)


@router.get("/session", response_model=SessionInfo, responses=errors(),
            summary="Who am I (and my CSRF token)")
def whoami(cfg: Cfg, creds: auth.Creds) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        web = auth.person(session, cfg, creds, auth.REVIEWER | auth.OVERSIGHT | auth.SUBJECT)
        return info(web)


@router.delete("/session", status_code=204, responses=errors(),
               summary="Log out (needs X-CSRF-Token)")
def logout(response: Response, cfg: Cfg, creds: auth.Creds) -> Response:
    with transaction(cfg.factory) as session:
        web = auth.person(session, cfg, creds, auth.REVIEWER | auth.OVERSIGHT | auth.SUBJECT,
                          unsafe=True)
        accounts.end_session(session, web.token)
    out = Response(status_code=204)
    out.delete_cookie(auth.SESSION_COOKIE, path="/v1")
    return out
