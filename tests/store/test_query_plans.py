"""The review queue and an agency's list are read in index order, on both databases.

Why a plan test: these pages show ``limit`` rows, but without the right index the database
reads and sorts every matching row first, a cost that grows with the queue and with every
request the agency ever made, and that no functional test notices.  Each test fails if
migration 0009's index is dropped (the plan then sorts).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, Select, text

from safehaven.api import views
from safehaven.service import requests as svc

CASES = [
    pytest.param(lambda: svc.review_queue(50), "ix_requests_state_received", id="review-queue"),
    # The page the API reads: the agency's rows walked backwards, with the view's
    # one-to-one tables joined.
    pytest.param(lambda: views.agency_page_query("police", state=None, limit=20),
                 "ix_requests_requester_id", id="agency-page"),
]


def _plan(engine: Engine, stmt: Select[Any]) -> str:
    sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + sql)).fetchall()
            return "\n".join(str(r[-1]) for r in rows)
        # An empty table makes a sequential scan and a sort look cheapest; forbidding both
        # asks "is there an index that gives this order?"  If not, the plan still sorts.
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_sort = off"))
        rows = conn.execute(text("EXPLAIN " + sql)).fetchall()
        return "\n".join(str(r[0]) for r in rows)


@pytest.mark.parametrize(("statement", "index"), CASES)
def test_page_is_read_in_index_order(engine: Engine, statement: Any, index: str) -> None:
    plan = _plan(engine, statement())
    assert index in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def test_plans_sort_without_the_index(engine: Engine) -> None:
    """The check above can fail: with the index dropped, the queue's plan sorts."""
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_requests_state_received"))
    plan = _plan(engine, svc.review_queue(50))
    assert "TEMP B-TREE" in plan or "Sort" in plan, plan
