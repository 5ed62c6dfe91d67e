"""Tables for the HTTP service: who may call it, their sessions, and what is sent to people.

Secrets are never stored: API tokens and session tokens are kept as sha256 digests (they
are long random values, so a fast hash is enough and keeps every API call cheap), passwords
as argon2 hashes, one-time codes as digests with an attempt counter.  Personal data appears
only where the job needs it: the NHS number that links a request to the person it is about
(so that person can see it), and the text of the notice queued to them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from safehaven.store.models import Base, BigId


class AgencyTokenRow(Base):
    """One API credential of a requesting agency, scoped to some of its agreements."""

    __tablename__ = "agency_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agency: Mapped[str] = mapped_column(String(80), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    agreements: Mapped[list[Any]] = mapped_column()
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AccountRow(Base):
    """A person who logs in: a reviewer or an oversight reader."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Failed logins from any address since the last success (migration 0008).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: No password is checked from any address before this time: the account-wide lock,
    #: for guessing spread over many addresses (``service.accounts.ACCOUNT_FAILURE_LIMIT``).
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginFailureRow(Base):
    """Failed logins to one account from one client address (migration 0010).

    Why per address: a lock on the whole account after a few wrong passwords lets anyone
    who knows a reviewer's username lock them out.  Counting per (account, address) stops
    a guesser at that address and leaves the reviewer at theirs alone; the account-wide
    count on :class:`AccountRow` still stops guessing spread over many addresses.  The
    address is kept here (an operational table, pruned) and only as a digest in the ledger.
    """

    __tablename__ = "login_failures"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebSessionRow(Base):
    """A browser session (cookie) for a reviewer, an oversight reader or a data subject."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    subject_nhs_number: Mapped[str | None] = mapped_column(String(10))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxRow(Base):
    """A letter or email queued for a person: a disclosure notice or an access code."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    channel: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SubjectCodeRow(Base):
    """A one-time code a person asked for to see the requests about them."""

    __tablename__ = "subject_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    nhs_number: Mapped[str] = mapped_column(String(10), index=True)
    birthdate: Mapped[date] = mapped_column(Date)
    code_sha256: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RequestSubjectRow(Base):
    """Links a request to the NHS number it named or matched, for the subject portal."""

    __tablename__ = "request_subjects"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"))
    nhs_number: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(10))

    __table_args__ = (
        UniqueConstraint("request_id", "nhs_number", name="uq_request_subjects"),
        Index("ix_request_subjects_nhs_number", "nhs_number"),
    )
