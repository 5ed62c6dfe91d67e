"""covering indexes for transparency reports (PostgreSQL)

A report reads a handful of narrow facts per request, but ``requests`` and ``decisions``
rows are wide (the request body and the full rule list, ~1-2 KB each), so reading them
from the heap costs most of a report: at 1 M requests one agreement-year took 5 s.  These
indexes carry the columns the report needs, so PostgreSQL answers from the index alone
(index-only scans): the (agreement, received) index gains ``id, state``; a received-time
index serves all-agreement reports; a decision index carries ``outcome`` and the failed
rule ids (0004); two small partial indexes answer "was it ever approved" and "did a
reviewer refuse it" without touching the (6-per-request) transitions table.  Measured in
``benchmarks/bench_pg.py`` / ``docs/scaling.md``.  SQLite has no INCLUDE and never holds
that volume, so nothing changes there.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_requests_agreement_received")
    op.execute("CREATE INDEX ix_requests_agreement_received ON requests "
               "(agreement_id, received_at) INCLUDE (id, state)")
    op.execute("CREATE INDEX ix_requests_received_cover ON requests (received_at) "
               "INCLUDE (agreement_id, id, state)")
    op.execute("CREATE INDEX ix_decisions_request_outcome ON decisions (request_id) "
               "INCLUDE (outcome, failed_rules)")
    op.execute("CREATE INDEX ix_transitions_approved ON transitions (request_id) "
               "WHERE to_state = 'approved'")
    op.execute("CREATE INDEX ix_reviews_refused ON reviews (request_id) "
               "WHERE verdict = 'refuse'")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in ("ix_reviews_refused", "ix_transitions_approved", "ix_decisions_request_outcome",
                 "ix_requests_received_cover", "ix_requests_agreement_received"):
        op.execute(f"DROP INDEX {name}")
    op.execute("CREATE INDEX ix_requests_agreement_received ON requests "
               "(agreement_id, received_at)")
