"""agreement versions: the content each version had when first used

Pins (agreement id, version) to the sha256 of its canonical content, so an agreement whose
text changed without a new version number is refused (``service.agreement_versions``).
Filled from the decisions already stored: for each version, the content of its earliest
decision.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agreement_versions",
        sa.Column("agreement_id", sa.String(length=80), nullable=False),
        sa.Column("version", sa.String(length=20), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agreement_id", "version"),
    )
    op.execute(
        "INSERT INTO agreement_versions (agreement_id, version, sha256, first_used_at) "
        "SELECT agreement_id, agreement_version, agreement_sha256, decided_at FROM ("
        "SELECT agreement_id, agreement_version, agreement_sha256, decided_at, ROW_NUMBER() "
        "OVER (PARTITION BY agreement_id, agreement_version ORDER BY decided_at, id) AS n "
        "FROM decisions WHERE agreement_id IS NOT NULL AND agreement_version IS NOT NULL "
        "AND agreement_sha256 IS NOT NULL) AS first WHERE n = 1")


def downgrade() -> None:
    op.drop_table("agreement_versions")
