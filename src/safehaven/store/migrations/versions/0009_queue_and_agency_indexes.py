"""indexes for the review queue and an agency's list

Both pages read a few rows in a fixed order, and both did so by reading and sorting every
matching row: the review queue (``state = 'in_review' ORDER BY received_at, id``) through
the state index, an agency's list (``requester = ? ORDER BY id DESC``) through the
idempotency key's unique index.  The cost grew with the queue and with every request the
agency had ever made: in the 10-minute soak (``benchmarks/load.py --seconds 600``) the list
went from 18 ms to 59 ms at the median while the store grew.  With these the database walks
the index in the page's order and stops after ``limit`` rows (checked by
``tests/store/test_query_plans.py``).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_requests_state_received", "requests", ["state", "received_at", "id"])
    op.create_index("ix_requests_requester_id", "requests", ["requester", "id"])


def downgrade() -> None:
    op.drop_index("ix_requests_requester_id", table_name="requests")
    op.drop_index("ix_requests_state_received", table_name="requests")
