"""The migrations build the schema the models describe, on both databases.

Why: the application's queries are written against ``store.models``, but a deployed store
is built by Alembic; an index or column added to one and not the other works in tests that
create tables from the models and fails (or is slow) in production.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from safehaven.store.models import Base

#: What exists only on PostgreSQL, by design: the generated column of failed rule ids (0004)
#: and the covering indexes for reports (0005).
POSTGRES_ONLY = {"decisions.failed_rules", "ix_requests_received_cover",
                 "ix_decisions_request_outcome", "ix_transitions_approved", "ix_reviews_refused"}


def _name(diff: Any) -> str | None:
    kind = diff[0] if isinstance(diff, tuple) else None
    if kind in ("add_index", "remove_index"):
        return str(diff[1].name)
    if kind == "remove_column":
        return f"{diff[2]}.{diff[3].name}"
    return None


def test_migrated_schema_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    if engine.dialect.name == "postgresql":
        diffs = [d for d in diffs if _name(d) not in POSTGRES_ONLY]
    assert diffs == []
