"""Who is calling: an agency (bearer token) or a person (session cookie), and what they may do.

Agencies authenticate every call with a token; people log in once and carry a session
cookie (HttpOnly, SameSite=Strict).  A cookie is sent by the browser on its own, so every
state-changing call made with one must also carry the session's CSRF token in
``X-CSRF-Token``; a bearer token is never sent automatically and needs none.

401 means "we don't know who you are", 403 "we do, and you may not"; another agency's
request is a 404, so an agency cannot even learn that an id exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from safehaven.api.context import ApiConfig
from safehaven.api.errors import forbidden, unauthorized
from safehaven.service import accounts
from safehaven.service.accounts import AgencyPrincipal, WebSession

SESSION_COOKIE = "safehaven_session"
CSRF_HEADER = "X-CSRF-Token"

_bearer = HTTPBearer(auto_error=False, description="An agency API token (`safehaven agency add`)")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                       description="Session cookie set by `POST /v1/session` or the portal")
_csrf = APIKeyHeader(name=CSRF_HEADER, auto_error=False,
                     description="CSRF token returned at login; needed with the cookie on "
                     "every state-changing call")


@dataclass(frozen=True)
class Credentials:
    bearer: str | None
    cookie: str | None
    csrf: str | None


async def credentials(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
    csrf: Annotated[str | None, Depends(_csrf)],
) -> Credentials:
    # ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in its
    # thread pool, a thread hop per request for three attribute reads.
    return Credentials(bearer.credentials if bearer else None, cookie, csrf)


Creds = Annotated[Credentials, Depends(credentials)]


def agency(db: Session | Connection, cfg: ApiConfig, creds: Credentials) -> AgencyPrincipal:
    if creds.bearer:
        principal = accounts.authenticate_agency(db, creds.bearer)
        if principal is not None:
            return principal
        raise unauthorized("invalid or revoked API token")
    if creds.cookie and accounts.load_session(db, creds.cookie, at=cfg.clock()):
        raise forbidden("this endpoint is for requesting agencies (API token)")
    raise unauthorized("an agency API token is required (Authorization: Bearer ...)")


def check_scope(principal: AgencyPrincipal, requester: str, agreement: str) -> None:
    """An agency acts in its own name, under the agreements its token is scoped to."""
    if requester != principal.agency:
        raise forbidden(
            f"requester: this token belongs to {principal.agency!r}, not {requester!r}"
        )
    if agreement not in principal.agreements:
        raise forbidden(
            f"agreement: this token may only be used under {sorted(principal.agreements)}"
        )


def person(
    session: Session,
    cfg: ApiConfig,
    creds: Credentials,
    roles: frozenset[str],
    *,
    unsafe: bool = False,
) -> WebSession:
    """The logged-in person, if their role is one of ``roles`` (and CSRF holds when unsafe)."""
    web = accounts.load_session(session, creds.cookie, at=cfg.clock()) if creds.cookie else None
    if web is None:
        if creds.bearer and accounts.authenticate_agency(session, creds.bearer):
            raise forbidden("agencies may not use this endpoint")
        raise unauthorized("log in first (session cookie)")
    if web.role not in roles:
        raise forbidden(f"the {web.role} role may not use this endpoint")
    if unsafe and not accounts.csrf_ok(web.csrf_token, creds.csrf):
        raise forbidden(f"{CSRF_HEADER}: missing or wrong CSRF token")
    return web


REVIEWER = frozenset({"reviewer"})
OVERSIGHT = frozenset({"oversight"})
SUBJECT = frozenset({"subject"})
