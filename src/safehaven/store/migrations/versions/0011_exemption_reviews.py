"""exemption reviews: the words of every exemption decision

``notifications`` keeps only an exemption's current reason, so a renewal overwrote the
reason before it (the ledger kept its hash).  Each decision (recorded, renewed, lifted) is
now a row.  Exemptions already in the store get one ``carried_over`` row with the reason
they hold now; reasons overwritten before this migration cannot be recovered.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "exemption_reviews",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("request_id", BigId, nullable=False),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("exemption_id", sa.String(length=80), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("review_on", sa.Date(), nullable=True),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_exemption_reviews_request_id", "exemption_reviews", ["request_id"])
    op.execute(
        "INSERT INTO exemption_reviews (request_id, action, exemption_id, reason, review_on, "
        "actor, at) SELECT request_id, 'carried_over', exemption_id, COALESCE(reason, ''), "
        "review_on, recorded_by, recorded_at FROM notifications "
        "WHERE exemption_id IS NOT NULL ORDER BY id")


def downgrade() -> None:
    op.drop_index("ix_exemption_reviews_request_id", table_name="exemption_reviews")
    op.drop_table("exemption_reviews")
