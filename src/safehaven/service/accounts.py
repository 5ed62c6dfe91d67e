"""Credentials: agency API tokens, reviewer/oversight accounts and browser sessions.

A token or session id is shown once and stored only as its sha256: whoever reads the
database cannot call the API as an agency.  API tokens are 256-bit random values, so a
fast hash is as strong as a slow one and keeps each call cheap; passwords are chosen by
people and get argon2.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session

from safehaven.domain.decision import AgreementSet
from safehaven.ledger import log as ledger_log
from safehaven.service.clock import as_utc
from safehaven.store.accounts import AccountRow, AgencyTokenRow, LoginFailureRow, WebSessionRow

TOKEN_PREFIX = "sh_"  # noqa: S105 - marks our tokens in logs and secret scanners
Role = Literal["reviewer", "oversight"]
ROLES: tuple[Role, ...] = ("reviewer", "oversight")
SESSION_TTL = timedelta(hours=8)
SUBJECT_SESSION_TTL = timedelta(minutes=30)
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")
MIN_PASSWORD = 12

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a login takes as long either way.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A credential cannot be created or changed; the message names the field."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AgencyPrincipal:
    agency: str
    agreements: frozenset[str]
    token_id: int


def agency_agreements(agreements: AgreementSet, agency: str) -> list[str]:
    """Agreements under which ``agency`` is a requesting party."""
    return sorted(a.id for a in agreements.agreements.values() if agency in a.requester_ids)


def create_agency_token(
    session: Session,
    agreements: AgreementSet,
    agency: str,
    *,
    scope: list[str] | None,
    label: str,
    at: datetime,
) -> tuple[str, AgencyTokenRow]:
    """Issue a token for ``agency``, limited to agreements it is a party to."""
    parties = agency_agreements(agreements, agency)
    if not parties:
        raise AccountError(
            f"agency: {agency!r} is not a requesting party to any loaded agreement; known "
            f"agencies: {sorted(agreements.agencies)}"
        )
    chosen = sorted(set(scope)) if scope else parties
    outside = [a for a in chosen if a not in parties]
    if outside:
        raise AccountError(
            f"agreement: {agency!r} is not a party to {outside}; it is a party to {parties}"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = AgencyTokenRow(
        agency=agency,
        token_sha256=digest(token),
        prefix=token[:10],
        agreements=chosen,
        label=label,
        created_at=at,
        revoked_at=None,
    )
    session.add(row)
    session.flush()
    return token, row


def revoke_agency_token(session: Session, token_id: int, *, at: datetime) -> AgencyTokenRow:
    row = session.get(AgencyTokenRow, token_id)
    if row is None:
        raise AccountError(f"id: no agency token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = at
    return row


def list_agency_tokens(session: Session) -> list[AgencyTokenRow]:
    return list(session.execute(select(AgencyTokenRow).order_by(AgencyTokenRow.id)).scalars())


_TOKEN_LOOKUP = select(AgencyTokenRow.agency, AgencyTokenRow.agreements, AgencyTokenRow.id).where(
    AgencyTokenRow.token_sha256 == bindparam("digest"), AgencyTokenRow.revoked_at.is_(None))


def _connection(db: Session | Connection) -> Connection:
    return db if isinstance(db, Connection) else db.connection()


def authenticate_agency(db: Session | Connection, token: str) -> AgencyPrincipal | None:
    """The agency a token belongs to, if it is live.  ``db`` may be a plain connection: the
    agency's polls read without a Session at all (``api/agencies.py``)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    # Columns from a statement built once, on the session's connection (Core: no ORM
    # execution or autoflush): this runs on every agency call and reads only credentials,
    # never rows of the caller's own transaction.
    row = _connection(db).execute(_TOKEN_LOOKUP, {"digest": digest(token)}).first()
    if row is None:
        return None
    return AgencyPrincipal(row.agency, frozenset(row.agreements), row.id)


def create_account(
    session: Session, username: str, role: str, password: str, *, at: datetime
) -> AccountRow:
    if not USERNAME_PATTERN.match(username):
        raise AccountError(
            "username: 2-80 characters, lower-case letters, digits, '.', '_' or '-'"
        )
    if role not in ROLES:
        raise AccountError(f"role: must be one of {list(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    if session.execute(
        select(AccountRow.id).where(AccountRow.username == username)
    ).first():
        raise AccountError(f"username: {username!r} already exists")
    row = AccountRow(
        username=username,
        role=role,
        password_hash=_hasher.hash(password),
        created_at=at,
        disabled_at=None,
    )
    session.add(row)
    session.flush()
    return row


def _account_of_role(session: Session, username: str, role: str | None) -> AccountRow:
    row = session.execute(
        select(AccountRow).where(AccountRow.username == username)
    ).scalar_one_or_none()
    if row is None:
        raise AccountError(f"username: no account {username!r}")
    if role is not None and row.role != role:
        raise AccountError(f"username: {username!r} is not a {role}")
    return row


def disable_account(session: Session, username: str, *, at: datetime,
                    role: str | None = None) -> AccountRow:
    """Disable an account and end its sessions; with ``role``, only an account of that role
    (``reviewer disable NAME`` must not disable an overseer of the same name by mistake)."""
    row = _account_of_role(session, username, role)
    row.disabled_at = row.disabled_at or at
    session.execute(delete(WebSessionRow).where(WebSessionRow.account_id == row.id))
    return row


def list_accounts(session: Session) -> list[AccountRow]:
    return list(session.execute(select(AccountRow).order_by(AccountRow.id)).scalars())


#: Failed logins from one client address that lock the account *for that address*, and for
#: how long (doubling with each further failure from there, at most :data:`MAX_LOCKOUT`).
MAX_FAILED_LOGINS = 5
#: Failed logins from all addresses together (since the last success) that lock the account
#: for everyone: guessing spread over many addresses.  High enough that locking a reviewer
#: out takes many addresses, not one script.
ACCOUNT_FAILURE_LIMIT = 50
LOCKOUT = timedelta(minutes=15)
MAX_LOCKOUT = timedelta(days=1)
#: A client's count is forgotten this long after its last failure (if not locked).
FAILURE_MEMORY = timedelta(days=2)


@dataclass(frozen=True)
class LoginCheck:
    """What a password check found.  Only ``account_id`` logs anyone in; the caller counts
    ``failed_account_id`` with :func:`record_failed_login`."""

    account_id: int | None = None
    failed_account_id: int | None = None
    locked: bool = False


def client_digest(client: str) -> str:
    """How a client address appears in the ledger: correlatable, not readable."""
    return hashlib.sha256(client.encode("utf-8")).hexdigest()[:16]


def _lock_duration(failures: int, limit: int) -> timedelta:
    """LOCKOUT, doubled for each failure past ``limit``, at most MAX_LOCKOUT.  The exponent
    is capped before multiplying: a timedelta overflows long before a count stops."""
    return min(LOCKOUT * (1 << min(max(failures - limit, 0), 16)), MAX_LOCKOUT)


def check_login(session: Session, username: str, password: str, *, at: datetime,
                client: str = "unknown") -> LoginCheck:
    """Check a password without writing (callers run it in a read-only snapshot).

    Why a lockout: argon2 slows each guess, but a reviewer account opens every pending
    request about people, so a patient guesser must be stopped, not only slowed.  Why per
    address (``client``): so that stopping a guesser does not stop the reviewer, who is
    somewhere else (see ``store.accounts.LoginFailureRow``).  A locked account's password
    is not checked at all (a right guess during the lock learns nothing); the dummy hash
    keeps unknown, locked and wrong answers equally slow, and the caller gives all three
    the same reply, so none reveals that an account exists.
    """
    row = session.execute(
        select(AccountRow).where(AccountRow.username == username)
    ).scalar_one_or_none()
    if row is not None and _locked(session, row, client, at):
        with contextlib.suppress(VerificationError, InvalidHashError):
            _hasher.verify(_DUMMY_HASH, password)
        return LoginCheck(locked=True)
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        counted = row is not None and row.disabled_at is None
        return LoginCheck(failed_account_id=row.id if counted and row else None)
    if row is None or row.disabled_at is not None:
        return LoginCheck()
    return LoginCheck(account_id=row.id)


def _locked(session: Session, row: AccountRow, client: str, at: datetime) -> bool:
    if row.locked_until is not None and as_utc(row.locked_until) > at:
        return True
    until = session.execute(
        select(LoginFailureRow.locked_until).where(
            LoginFailureRow.account_id == row.id, LoginFailureRow.client == client)
    ).scalar_one_or_none()
    return until is not None and as_utc(until) > at


def verify_login(session: Session, username: str, password: str,
                 *, at: datetime | None = None, client: str = "unknown") -> AccountRow | None:
    """The account if the password is right and the account usable (not disabled, not
    locked); read-only, counts nothing (see :func:`check_login`)."""
    found = check_login(session, username, password, at=at or datetime.now(UTC), client=client)
    return None if found.account_id is None else session.get(AccountRow, found.account_id)


def record_failed_login(session: Session, account_id: int, *, at: datetime,
                        client: str = "unknown") -> datetime | None:
    """Count a wrong password from ``client``: lock the account for that address at
    :data:`MAX_FAILED_LOGINS`, and for every address at :data:`ACCOUNT_FAILURE_LIMIT`
    failures from all addresses together.

    Returns the end of the lock this failure started or extended, if any.  Each lock is a
    ledger entry (with a digest of the address), so oversight sees guessing against
    reviewer accounts and can tell one source from many.
    """
    ledger_log.lock(session)  # ledger before account rows, as every writer (``ledger.log.lock``)
    row = session.execute(
        select(AccountRow).where(AccountRow.id == account_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        return None
    # Forget stale counts (an address that failed once last week starts again at zero).
    session.execute(delete(LoginFailureRow).where(
        LoginFailureRow.account_id == account_id, LoginFailureRow.last_at < at - FAILURE_MEMORY,
        (LoginFailureRow.locked_until.is_(None)) | (LoginFailureRow.locked_until < at)))
    pair = session.get(LoginFailureRow, (account_id, client), with_for_update=True)
    if pair is None:
        pair = LoginFailureRow(account_id=account_id, client=client, failures=0, last_at=at)
        session.add(pair)
    pair.failures += 1
    pair.last_at = at
    row.failed_logins = (row.failed_logins or 0) + 1
    until: datetime | None = None
    if pair.failures >= MAX_FAILED_LOGINS:
        pair.locked_until = until = at + _lock_duration(pair.failures, MAX_FAILED_LOGINS)
        _ledger_lock(session, row, at, until, scope="address", client=client,
                     failures=pair.failures)
    if row.failed_logins >= ACCOUNT_FAILURE_LIMIT:
        row.locked_until = until = at + _lock_duration(row.failed_logins, ACCOUNT_FAILURE_LIMIT)
        _ledger_lock(session, row, at, until, scope="account", client=client,
                     failures=row.failed_logins)
    return until


def _ledger_lock(session: Session, row: AccountRow, at: datetime, until: datetime, *,
                 scope: str, client: str, failures: int) -> None:
    ledger_log.append(session, {
        "type": "account.locked", "username": row.username, "role": row.role,
        "scope": scope, "client_sha256": client_digest(client), "failed_logins": failures,
        "until": as_utc(until).isoformat(), "at": as_utc(at).isoformat(),
    })


def login_succeeded(session: Session, row: AccountRow, *, client: str = "unknown") -> None:
    """A successful login clears the account-wide count and this address's count (in the
    caller's transaction); other addresses' locks stay: a guesser elsewhere is still one.

    Nothing is written (or locked) in the common case of nothing to clear; otherwise the
    ledger's lock is taken first, in the order :func:`record_failed_login` takes them.
    """
    pair = session.get(LoginFailureRow, (row.id, client))
    if not (row.failed_logins or row.locked_until is not None or pair is not None):
        return
    ledger_log.lock(session)
    row.failed_logins = 0
    row.locked_until = None
    if pair is not None:
        session.delete(pair)


def locked_addresses(session: Session, account_id: int, *, at: datetime) -> int:
    """How many client addresses are locked out of an account now (for ``reviewer list``)."""
    return len(session.execute(select(LoginFailureRow.client).where(
        LoginFailureRow.account_id == account_id, LoginFailureRow.locked_until > at)).all())


def unlock_account(session: Session, username: str, *, actor: str, at: datetime,
                   role: str | None = None) -> AccountRow:
    """An administrator lifts every lockout of an account, account-wide and per address
    (after checking with the person); on the ledger.  ``role`` as in
    :func:`disable_account`."""
    row = _account_of_role(session, username, role)
    row.failed_logins = 0
    row.locked_until = None
    session.execute(delete(LoginFailureRow).where(LoginFailureRow.account_id == row.id))
    ledger_log.append(session, {
        "type": "account.unlocked", "username": row.username, "role": row.role,
        "actor": actor, "at": as_utc(at).isoformat(),
    })
    return row


@dataclass(frozen=True)
class WebSession:
    token: str
    csrf_token: str
    role: str
    account_id: int | None
    username: str | None
    subject_nhs_number: str | None
    expires_at: datetime


def start_session(
    session: Session,
    *,
    role: str,
    at: datetime,
    account: AccountRow | None = None,
    subject_nhs_number: str | None = None,
) -> WebSession:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    ttl = SUBJECT_SESSION_TTL if role == "subject" else SESSION_TTL
    row = WebSessionRow(
        token_sha256=digest(token),
        role=role,
        account_id=account.id if account else None,
        subject_nhs_number=subject_nhs_number,
        csrf_token=csrf,
        created_at=at,
        expires_at=at + ttl,
    )
    session.add(row)
    session.flush()
    return WebSession(token, csrf, role, row.account_id,
                      account.username if account else None, subject_nhs_number, row.expires_at)


_SESSION_LOOKUP = (
    select(WebSessionRow.role, WebSessionRow.account_id, WebSessionRow.csrf_token,
           WebSessionRow.subject_nhs_number, WebSessionRow.expires_at,
           AccountRow.username, AccountRow.role.label("account_role"), AccountRow.disabled_at)
    .outerjoin(AccountRow, AccountRow.id == WebSessionRow.account_id)
    .where(WebSessionRow.token_sha256 == bindparam("digest"))
)


def load_session(db: Session | Connection, token: str, *, at: datetime) -> WebSession | None:
    """The live session for a cookie, with its account checked (not disabled, same role).

    One Core query for session and account: every reviewer, overseer and subject call
    starts here.  (Sessions are flushed when created, so the connection sees them.)
    """
    if not token or len(token) > 200:
        return None
    row = _connection(db).execute(_SESSION_LOOKUP, {"digest": digest(token)}).first()
    if row is None or as_utc(row.expires_at) <= at:
        return None
    if row.account_id is not None and (
        row.username is None or row.disabled_at is not None or row.account_role != row.role
    ):
        return None
    return WebSession(token, row.csrf_token, row.role, row.account_id, row.username,
                      row.subject_nhs_number, as_utc(row.expires_at))


def end_session(session: Session, token: str) -> None:
    session.execute(delete(WebSessionRow).where(WebSessionRow.token_sha256 == digest(token)))


def csrf_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
