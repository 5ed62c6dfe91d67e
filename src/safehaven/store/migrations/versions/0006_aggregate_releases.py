"""aggregate releases

Every aggregate request received over the API (``POST /v1/aggregates``), its decision and
the protected table (``aggregate_releases``), and each reviewer's verdict with its reason
(``aggregate_reviews``; one verdict per reviewer, so four-eyes needs two people).
Idempotency on ``(requester, request_key)``, as for tracing requests.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "aggregate_releases",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.Column("requester", sa.String(length=80), nullable=False),
        sa.Column("request_key", sa.String(length=128), nullable=True),
        sa.Column("agreement_id", sa.String(length=80), nullable=False),
        sa.Column("purpose", sa.String(length=80), nullable=False),
        sa.Column("made_on", sa.Date(), nullable=False),
        sa.Column("dimensions", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", UTC_TIME, nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("protected_table", sa.JSON(), nullable=True),
        sa.Column("table_sha256", sa.String(length=64), nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
        sa.UniqueConstraint("requester", "request_key",
                            name="uq_aggregate_releases_requester_key"),
    )
    op.create_index("ix_aggregate_releases_state", "aggregate_releases", ["state"])
    op.create_index("ix_aggregate_releases_requester", "aggregate_releases",
                    ["requester", "id"])
    op.create_table(
        "aggregate_reviews",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("release_id", BigId, nullable=False),
        sa.Column("reviewer", sa.String(length=80), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reviewed_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["release_id"], ["aggregate_releases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("release_id", "reviewer", name="uq_aggregate_reviews_once_each"),
    )


def downgrade() -> None:
    op.drop_table("aggregate_reviews")
    op.drop_index("ix_aggregate_releases_requester", table_name="aggregate_releases")
    op.drop_index("ix_aggregate_releases_state", table_name="aggregate_releases")
    op.drop_table("aggregate_releases")
