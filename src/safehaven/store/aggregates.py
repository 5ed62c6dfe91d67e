"""Tables for aggregate releases: every request for counts, its decision, the protected
table, and the reviewers' verdicts.

Nothing here is personal data: the request names an agreement, a purpose and at most two
breakdowns; the table holds only counts that survived disclosure control (suppressed
values are stored as ``"suppressed"``, never as the number).  The table is computed when
the request is received; while a release waits for review it is kept for the reviewers
and shown to the requester only once released.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, DateTime, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from safehaven.store.models import Base, BigId


class AggregateReleaseRow(Base):
    """One aggregate request and where it stands: ``refused``, ``in_review`` or
    ``released``."""

    __tablename__ = "aggregate_releases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    requester: Mapped[str] = mapped_column(String(80))
    request_key: Mapped[str | None] = mapped_column(String(128))
    agreement_id: Mapped[str] = mapped_column(String(80))
    purpose: Mapped[str] = mapped_column(String(80))
    made_on: Mapped[date] = mapped_column(Date)
    dimensions: Mapped[list[Any]] = mapped_column()
    body: Mapped[dict[str, Any]] = mapped_column()
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(20))
    decision: Mapped[dict[str, Any]] = mapped_column()
    protected_table: Mapped[dict[str, Any] | None] = mapped_column()
    table_sha256: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    reviews: Mapped[list[AggregateReviewRow]] = relationship(
        back_populates="release", order_by="AggregateReviewRow.id"
    )

    __table_args__ = (
        UniqueConstraint("requester", "request_key", name="uq_aggregate_releases_requester_key"),
        Index("ix_aggregate_releases_state", "state"),
        Index("ix_aggregate_releases_requester", "requester", "id"),
    )


class AggregateReviewRow(Base):
    """One reviewer's verdict on an aggregate release, with the written reason."""

    __tablename__ = "aggregate_reviews"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("aggregate_releases.id"))
    reviewer: Mapped[str] = mapped_column(String(80))
    verdict: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    reviewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    release: Mapped[AggregateReleaseRow] = relationship(back_populates="reviews")

    __table_args__ = (
        UniqueConstraint("release_id", "reviewer", name="uq_aggregate_reviews_once_each"),
    )
