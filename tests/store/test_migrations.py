"""The migrations build the schema the models describe, on both databases.

Why: the application's queries are written against ``store.models``, but a deployed store
is built by Alembic; an index or column added to one and not the other works in tests that
create tables from the models and fails (or is slow) in production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, text

from safehaven.store.db import _alembic_config, make_engine, upgrade
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


def _store_at(tmp_path: Path, revision: str) -> Engine:
    """A SQLite store migrated only up to ``revision`` (what an older install has)."""
    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    command.upgrade(_alembic_config(engine), revision)
    return engine


def _insert_request(conn: Connection, i: int, state: str, at: str) -> None:
    conn.execute(text(
        "INSERT INTO requests (id, public_id, requester, request_key, agreement_id, purpose, "
        "made_on, received_at, body, body_sha256, state, updated_at) VALUES "
        f"({i}, 'r-{i}', 'police', 'k{i}', 'nhs-police-tracing', 'police-serious-crime', "
        f"'2017-09-01', '{at}', '{{}}', 'x{i}', '{state}', '{at}')"))


def test_exemptions_in_the_store_are_carried_over_by_0011(tmp_path: Path) -> None:
    """An exemption recorded before 0011 keeps its current reason as a ``carried_over`` row."""
    engine = _store_at(tmp_path, "0010")
    at = "2026-11-01 10:00:00.000000"
    with engine.begin() as conn:
        _insert_request(conn, 1, "exempted", at)
        _insert_request(conn, 2, "notified", at)
        conn.execute(text(
            "INSERT INTO notifications (request_id, kind, exemption_id, reason, review_on, "
            "recorded_by, recorded_at) VALUES "
            f"(1, 'exempted', 'prejudice-crime-prevention', 'would flee', '2026-12-01', "
            f"'alice', '{at}'), (2, 'notified', NULL, NULL, NULL, 'safehaven', '{at}')"))
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT request_id, action, exemption_id, reason, review_on, actor "
            "FROM exemption_reviews")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        (1, "carried_over", "prejudice-crime-prevention", "would flee", "2026-12-01", "alice")]


def test_0012_pins_each_version_to_the_text_of_its_earliest_decision(tmp_path: Path) -> None:
    engine = _store_at(tmp_path, "0011")
    with engine.begin() as conn:
        for i, (sha, at) in enumerate([("b" * 64, "2026-11-02 10:00:00.000000"),
                                       ("a" * 64, "2026-11-01 10:00:00.000000")], start=1):
            _insert_request(conn, i, "refused", at)
            conn.execute(text(
                "INSERT INTO decisions (request_id, outcome, rules, agreement_id, "
                "agreement_version, agreement_sha256, firewall_on, reviewers_required, "
                f"permitted_fields, decided_at) VALUES ({i}, 'refused', '[]', "
                f"'nhs-police-tracing', '1.0', '{sha}', 1, 0, '[]', '{at}')"))
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT agreement_id, version, sha256 FROM agreement_versions")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("nhs-police-tracing", "1.0", "a" * 64)]
