"""Tables.  Personal data lives only in ``requests.body`` (and later the register).

Timestamps are stored as timezone-aware UTC.  JSON columns hold structured explanations
(rules applied, fields disclosed) exactly as they were produced, so a decision can be shown
to a reviewer or an auditor without being recomputed.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class RequestRow(Base):
    __tablename__ = "requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    requester: Mapped[str] = mapped_column(String(80))
    request_key: Mapped[str | None] = mapped_column(String(128))
    agreement_id: Mapped[str] = mapped_column(String(80))
    purpose: Mapped[str] = mapped_column(String(80))
    made_on: Mapped[date] = mapped_column(Date)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    body_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    decision: Mapped[DecisionRow | None] = relationship(back_populates="request", uselist=False)
    reviews: Mapped[list[ReviewRow]] = relationship(
        back_populates="request", order_by="ReviewRow.id"
    )

    __table_args__ = (
        UniqueConstraint("requester", "request_key", name="uq_requests_requester_key"),
        Index("ix_requests_agreement_received", "agreement_id", "received_at"),
        Index("ix_requests_state", "state"),
        # 0009: the review queue and an agency's list read in index order (see
        # ``service.requests.review_queue`` / ``api.views._agency_page``).
        Index("ix_requests_state_received", "state", "received_at", "id"),
        Index("ix_requests_requester_id", "requester", "id"),
    )


class DecisionRow(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), unique=True)
    outcome: Mapped[str] = mapped_column(String(20))
    rules: Mapped[list[Any]] = mapped_column(JSON)
    agreement_id: Mapped[str | None] = mapped_column(String(80))
    agreement_version: Mapped[str | None] = mapped_column(String(20))
    agreement_sha256: Mapped[str | None] = mapped_column(String(64))
    firewall_on: Mapped[bool] = mapped_column(Boolean)
    reviewers_required: Mapped[int] = mapped_column(Integer)
    permitted_fields: Mapped[list[Any]] = mapped_column(JSON)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    request: Mapped[RequestRow] = relationship(back_populates="decision")


class ReviewRow(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"))
    reviewer: Mapped[str] = mapped_column(String(80))
    verdict: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    reviewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    request: Mapped[RequestRow] = relationship(back_populates="reviews")

    __table_args__ = (UniqueConstraint("request_id", "reviewer", name="uq_reviews_once_each"),)


class MatchRow(Base):
    __tablename__ = "matches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    score: Mapped[float | None] = mapped_column(Float)
    record_id: Mapped[str | None] = mapped_column(String(64))
    matched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DisclosureRow(Base):
    __tablename__ = "disclosures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), unique=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    new_information: Mapped[bool | None] = mapped_column(Boolean)
    disclosed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NotificationRow(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # "notified" | "exempted"
    exemption_id: Mapped[str | None] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(Text)
    review_on: Mapped[date | None] = mapped_column(Date)
    recorded_by: Mapped[str] = mapped_column(String(80))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AgreementVersionRow(Base):
    """The content each agreement version had when it was first used (migration 0012).

    Why: decisions cite an agreement by id, version *and* sha256, but nothing stopped a
    controller from editing an agreement's text (widening its fields, say) and keeping its
    version number, so "version 1.2" would name two different rules.  The first content
    seen for a version is pinned here; a different text under the same version is refused
    at start-up (``service.agreement_versions``).
    """

    __tablename__ = "agreement_versions"

    agreement_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[str] = mapped_column(String(20), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    first_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ExemptionReviewRow(Base):
    """Each decision about an exemption from notice, with its written reason (migration 0011).

    Why: ``notifications`` holds only the exemption's current state, so each renewal
    overwrote the reason before it; the ledger keeps every reason's hash, which proves a
    text but cannot bring one back.  Oversight asking "why was this person still not told
    in March?" needs the words.  ``action``: ``recorded``, ``renewed``, ``lifted``, or
    ``carried_over`` (the state an exemption was in when this table was added; earlier
    reasons were not kept).
    """

    __tablename__ = "exemption_reviews"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    action: Mapped[str] = mapped_column(String(12))
    exemption_id: Mapped[str | None] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    review_on: Mapped[date | None] = mapped_column(Date)
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TransitionRow(Base):
    """Every lifecycle step, in order; the ledger commits to the same events."""

    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    event: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReportDailyRow(Base):
    """Report counts per (agreement, UTC day of receipt), kept by ``service.rollup``.

    One column per ``domain.statistics.COUNT_FIELDS`` entry, each the count the report's
    reference aggregation (``service.reports.tally_sql``) gives for the requests received
    that day.  Updated in the transaction that changes the facts, so a report reads a few
    rows per agreement-day instead of every request (migration 0007).
    """

    __tablename__ = "report_daily"

    agreement_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    received: Mapped[int] = mapped_column(Integer, default=0)
    refused_by_engine: Mapped[int] = mapped_column(Integer, default=0)
    sent_to_review: Mapped[int] = mapped_column(Integer, default=0)
    refused_by_reviewer: Mapped[int] = mapped_column(Integer, default=0)
    approved: Mapped[int] = mapped_column(Integer, default=0)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    ambiguous: Mapped[int] = mapped_column(Integer, default=0)
    no_match: Mapped[int] = mapped_column(Integer, default=0)
    disclosed: Mapped[int] = mapped_column(Integer, default=0)
    new_information: Mapped[int] = mapped_column(Integer, default=0)
    already_known: Mapped[int] = mapped_column(Integer, default=0)
    notified: Mapped[int] = mapped_column(Integer, default=0)
    exempted: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_report_daily_day", "day"),)


class ReportRefusalRow(Base):
    """Engine refusals per (agreement, UTC day of receipt, failed rule), one per occurrence."""

    __tablename__ = "report_daily_refusals"

    agreement_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    rule: Mapped[str] = mapped_column(String(120), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_report_daily_refusals_day", "day"),)


class CapCounterRow(Base):
    """Requests counted against an agreement's monthly cap; locked row per month."""

    __tablename__ = "cap_counters"

    agreement_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    used: Mapped[int] = mapped_column(Integer)


class SettingRow(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PolicyChangeRow(Base):
    """Who switched what, when and why: the controller's own decisions are on record too."""

    __tablename__ = "policy_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    setting: Mapped[str] = mapped_column(String(80))
    value: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# --- Tamper-evident ledger (see safehaven.ledger and docs/ledger.md) -------------------------


class LedgerEntryRow(Base):
    """One leaf of the RFC 6962 log: the canonical JSON event, addressed by its 0-based index.

    ``leaf_hash`` is redundant with ``event`` on purpose: a verifier that finds the two
    disagree can name the exact entry that was edited instead of only "the root differs".
    """

    __tablename__ = "ledger_entries"

    idx: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    event: Mapped[str] = mapped_column(Text)


class LedgerNodeRow(Base):
    """Hash of the complete subtree covering leaves [idx * 2**level, (idx + 1) * 2**level).

    Only levels >= 1 are stored (level 0 is ``ledger_entries.leaf_hash``); a node is written
    once, when its subtree becomes complete, so a proof needs O(log n) point lookups and an
    append never rehashes the log.
    """

    __tablename__ = "ledger_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    # The key is the only index; a separate rowid would double the table on SQLite.
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012


class LedgerStateRow(Base):
    """The single row appenders lock: current size and the right edge ("compact range").

    ``frontier`` is the concatenation of the complete-subtree hashes of the tree's right
    edge, largest first (one per set bit of ``size``), so an append reads one row.
    """

    __tablename__ = "ledger_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerHeadRow(Base):
    """A signed tree head; every one is kept so any two can be proved consistent."""

    __tablename__ = "ledger_heads"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


# Tables of the HTTP service live in their own module; importing it here puts them in
# ``Base.metadata`` so migrations (and autogenerate) always see every table.
from safehaven.store import accounts as _accounts  # noqa: E402,F401
from safehaven.store import aggregates as _aggregates  # noqa: E402,F401
