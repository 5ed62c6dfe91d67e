"""failed rules of a decision as a stored column (PostgreSQL)

Transparency reports count refusals by rule.  The rule list in ``decisions.rules`` is a
~2 KB JSON document per decision (every rule with its reason); parsing it for every
refused request in a year of national traffic is most of a report's time (7x the rest at
50 k requests).  PostgreSQL keeps the ids of the failed rules beside it in a generated
column, computed once when the decision is written: nothing in the application writes it,
so it cannot disagree with ``rules``.  SQLite cannot add a stored generated column to an
existing table and is never used at that volume; the report reads ``rules`` there.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE decisions ADD COLUMN failed_rules jsonb GENERATED ALWAYS AS "
        "(jsonb_path_query_array(rules::jsonb, '$[*] ? (@.passed == false).id')) STORED"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE decisions DROP COLUMN failed_rules")
