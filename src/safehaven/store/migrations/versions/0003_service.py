"""service

Tables of the HTTP service (``safehaven.store.accounts``): agency API tokens, reviewer and
oversight accounts, browser sessions, the outbox of letters and emails to people, one-time
codes for the subject portal, and the link from a request to the person it is about.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 03:55:49.328913
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("disabled_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "agency_tokens",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("agency", sa.String(length=80), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("agreements", sa.JSON(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_index("ix_agency_tokens_agency", "agency_tokens", ["agency"])
    op.create_table(
        "subject_codes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("nhs_number", sa.String(length=10), nullable=False),
        sa.Column("birthdate", sa.Date(), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.Column("used_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_subject_codes_nhs_number", "subject_codes", ["nhs_number"])
    op.create_table(
        "outbox",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("request_id", BigId, nullable=True),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("sent_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_request_id", "outbox", ["request_id"])
    op.create_table(
        "request_subjects",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("request_id", BigId, nullable=False),
        sa.Column("nhs_number", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "nhs_number", name="uq_request_subjects"),
    )
    op.create_index("ix_request_subjects_nhs_number", "request_subjects", ["nhs_number"])
    op.create_table(
        "web_sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("account_id", BigId, nullable=True),
        sa.Column("subject_nhs_number", sa.String(length=10), nullable=True),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("token_sha256"),
    )


def downgrade() -> None:
    op.drop_table("web_sessions")
    op.drop_index("ix_request_subjects_nhs_number", table_name="request_subjects")
    op.drop_table("request_subjects")
    op.drop_index("ix_outbox_request_id", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_subject_codes_nhs_number", table_name="subject_codes")
    op.drop_table("subject_codes")
    op.drop_index("ix_agency_tokens_agency", table_name="agency_tokens")
    op.drop_table("agency_tokens")
    op.drop_table("accounts")
