"""daily report rollup

A transparency report used to aggregate the raw tables (requests, decisions, matches,
disclosures, notifications, plus "ever approved" / "refused by a reviewer" semi-joins and
the decision's rule list): its cost grew with the requests counted, ~4 s for one
agreement-year and ~15 s for every agreement over two years at 3 M requests on
PostgreSQL.  ``report_daily`` holds the report's counts per (agreement, UTC day of
receipt) and ``report_daily_refusals`` the engine refusals per (agreement, day, failed
rule); ``service.rollup`` keeps both in the transaction that changes the facts, and a
report reads one row per agreement-day.

The upgrade backfills both tables from the rows already stored, with its own SQL (a
migration must not depend on today's application code, which may change after it); the
result equals ``safehaven reports rebuild`` (``service.reports.rebuild_rollup``) and so
the reference aggregation (asserted in ``tests/service/test_rollup.py``).  The counts
statement is built with SQLAlchemy Core (the day expression differs by dialect); the
refusals need each dialect's JSON functions, so they are two fixed SQL strings.  On
PostgreSQL the counter table gets a fillfactor of 70, so that its frequent increments can
stay heap-only (HOT) updates on the same page instead of new index entries.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COUNTERS = ("received", "refused_by_engine", "sent_to_review", "refused_by_reviewer",
            "approved", "matched", "ambiguous", "no_match", "disclosed", "new_information",
            "already_known", "notified", "exempted", "pending")

_PENDING = ("received", "decided", "in_review", "approved", "matched", "disclosed")

# Lightweight table stand-ins (not the ORM models): the columns as of this revision.
_requests = sa.table("requests", sa.column("id"), sa.column("agreement_id"),
                     sa.column("received_at", sa.DateTime(timezone=True)), sa.column("state"))
_decisions = sa.table("decisions", sa.column("request_id"), sa.column("outcome"))
_matches = sa.table("matches", sa.column("request_id"), sa.column("status"))
_disclosures = sa.table("disclosures", sa.column("id"), sa.column("request_id"),
                        sa.column("new_information", sa.Boolean()))
_notifications = sa.table("notifications", sa.column("request_id"), sa.column("kind"))
_transitions = sa.table("transitions", sa.column("request_id"), sa.column("to_state"))
_reviews = sa.table("reviews", sa.column("request_id"), sa.column("verdict"))
_report_daily = sa.table("report_daily", sa.column("agreement_id"), sa.column("day"),
                         *(sa.column(name) for name in COUNTERS))

_BACKFILL_REFUSALS = {
    # ``decisions.failed_rules`` is the generated column of migration 0004.
    "postgresql": """
INSERT INTO report_daily_refusals (agreement_id, day, rule, n)
SELECT r.agreement_id, (r.received_at AT TIME ZONE 'UTC')::date, e, count(*)
FROM requests r JOIN decisions d ON d.request_id = r.id
CROSS JOIN LATERAL jsonb_array_elements_text(d.failed_rules) AS e
WHERE d.outcome = 'refused'
GROUP BY 1, 2, 3
""",
    "sqlite": """
INSERT INTO report_daily_refusals (agreement_id, day, rule, n)
SELECT r.agreement_id, date(r.received_at), json_extract(e.value, '$.id'), count(*)
FROM requests r JOIN decisions d ON d.request_id = r.id, json_each(d.rules) AS e
WHERE d.outcome = 'refused' AND NOT json_extract(e.value, '$.passed')
GROUP BY 1, 2, 3
""",
}


def _backfill_counts(dialect: str) -> sa.Insert:
    """``INSERT INTO report_daily SELECT``: one row per (agreement, day) with requests."""
    r, d, m, x, n = _requests, _decisions, _matches, _disclosures, _notifications
    if dialect == "postgresql":  # the UTC calendar day of a timestamptz
        day: Any = sa.cast(sa.func.timezone("UTC", r.c.received_at), sa.Date)
    else:  # SQLite stores the UTC wall-clock text; date() keeps its day
        day = sa.func.date(r.c.received_at)
    approved = (sa.select(_transitions.c.request_id).where(_transitions.c.to_state == "approved")
                .distinct().subquery("ap"))
    review_refused = (sa.select(_reviews.c.request_id).where(_reviews.c.verdict == "refuse")
                      .distinct().subquery("rr"))

    def count(cond: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    disclosed = x.c.id.is_not(None)
    counters = {
        "received": sa.func.count(),
        "refused_by_engine": count(d.c.outcome == "refused"),
        "sent_to_review": count(d.c.outcome == "needs_review"),
        "refused_by_reviewer": count(review_refused.c.request_id.is_not(None)),
        "approved": count(approved.c.request_id.is_not(None)),
        "matched": count(m.c.status == "matched"),
        "ambiguous": count(m.c.status == "ambiguous"),
        "no_match": count(m.c.status == "no_match"),
        "disclosed": count(disclosed),
        "new_information": count(sa.and_(disclosed, x.c.new_information.is_(True))),
        "already_known": count(sa.and_(disclosed, x.c.new_information.is_(False))),
        "notified": count(n.c.kind == "notified"),
        "exempted": count(n.c.kind == "exempted"),
        "pending": count(r.c.state.in_(_PENDING)),
    }
    assert tuple(counters) == COUNTERS
    source = (
        sa.select(r.c.agreement_id, day.label("day"), *counters.values())
        .select_from(
            r.outerjoin(d, d.c.request_id == r.c.id)
            .outerjoin(m, m.c.request_id == r.c.id)
            .outerjoin(x, x.c.request_id == r.c.id)
            .outerjoin(n, n.c.request_id == r.c.id)
            .outerjoin(approved, approved.c.request_id == r.c.id)
            .outerjoin(review_refused, review_refused.c.request_id == r.c.id))
        .group_by(r.c.agreement_id, day)
    )
    return sa.insert(_report_daily).from_select(["agreement_id", "day", *COUNTERS], source)


def upgrade() -> None:
    dialect = "postgresql" if op.get_bind().dialect.name == "postgresql" else "sqlite"
    op.create_table(
        "report_daily",
        sa.Column("agreement_id", sa.String(length=80), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTERS),
        sa.PrimaryKeyConstraint("agreement_id", "day"),
    )
    op.create_index("ix_report_daily_day", "report_daily", ["day"])
    op.create_table(
        "report_daily_refusals",
        sa.Column("agreement_id", sa.String(length=80), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rule", sa.String(length=120), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("agreement_id", "day", "rule"),
    )
    op.create_index("ix_report_daily_refusals_day", "report_daily_refusals", ["day"])
    if dialect == "postgresql":
        op.execute("ALTER TABLE report_daily SET (fillfactor = 70)")
        # JIT compiles this one-off scan for seconds longer than it runs (see 0004/0005).
        op.execute("SET LOCAL jit = off")
    op.execute(_backfill_counts(dialect))
    op.execute(_BACKFILL_REFUSALS[dialect])


def downgrade() -> None:
    op.drop_index("ix_report_daily_refusals_day", table_name="report_daily_refusals")
    op.drop_table("report_daily_refusals")
    op.drop_index("ix_report_daily_day", table_name="report_daily")
    op.drop_table("report_daily")
