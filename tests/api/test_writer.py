"""The group-commit writer (``api/writer.py``): one transaction per batch, every caller
answered after the commit, and a failing unit rolls back only itself."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from safehaven.api.writer import GroupCommitter
from safehaven.service import requests as svc
from safehaven.store.db import make_engine, session_factory
from safehaven.store.models import SettingRow


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x TEXT PRIMARY KEY)"))
    yield session_factory(engine)
    engine.dispose()


def _rows(factory: sessionmaker[Session]) -> list[str]:
    with factory() as s:
        return sorted(s.execute(text("SELECT x FROM t")).scalars())


def _insert(x: str, calls: list[str] | None = None) -> Any:
    def unit(session: Session) -> str:
        if calls is not None:
            calls.append(x)
        session.execute(text("INSERT INTO t (x) VALUES (:x)"), {"x": x})
        return x
    return unit


def _failing_after_write(x: str) -> Any:
    def unit(session: Session) -> str:
        session.execute(text("INSERT INTO t (x) VALUES (:x)"), {"x": x})
        raise ValueError(f"unit {x} refused after writing")
    return unit


def _queue(writer: GroupCommitter, units: list[Any]) -> list[Any]:
    """Run ``units`` as one batch (as the writer thread would take them off its queue)."""
    from concurrent.futures import Future

    futures: list[Future[Any]] = [Future() for _ in units]
    writer._run_batch(list(zip(units, futures, strict=True)))
    return futures


def test_a_failing_unit_rolls_back_only_itself(factory: sessionmaker[Session]) -> None:
    writer = GroupCommitter(factory)
    calls: list[str] = []
    futures = _queue(writer, [_insert("a", calls), _failing_after_write("b"),
                              _insert("c", calls)])
    assert futures[0].result() == "a" and futures[2].result() == "c"
    with pytest.raises(ValueError, match="unit b refused"):
        futures[1].result()
    assert _rows(factory) == ["a", "c"]  # b's write is gone, a's and c's are committed
    # The fast attempt (no savepoints) ran "a" and failed at "b"; it was rolled back and
    # the batch ran again with a savepoint per unit: "a" twice, "c" once, stored once.
    assert calls == ["a", "a", "c"]


def _refusing(x: str, calls: list[str]) -> Any:
    """A unit that reads, then refuses before writing (as a verdict on a closed request)."""
    def unit(session: Session) -> str:
        calls.append(x)
        session.execute(text("SELECT count(*) FROM t")).scalar_one()
        raise ValueError(f"unit {x} refused before writing")
    return unit


def test_a_unit_refused_before_writing_costs_the_batch_nothing(
    factory: sessionmaker[Session],
) -> None:
    """No rollback and no second run: the others are run once and committed together."""
    writer = GroupCommitter(factory)
    calls: list[str] = []
    commits: list[int] = []
    event.listen(factory, "after_commit", lambda s: commits.append(1))
    futures = _queue(writer, [_insert("a", calls), _refusing("b", calls),
                              _insert("c", calls)])
    assert futures[0].result() == "a" and futures[2].result() == "c"
    with pytest.raises(ValueError, match="unit b refused before writing"):
        futures[1].result()
    assert calls == ["a", "b", "c"] and _rows(factory) == ["a", "c"] and commits == [1]


def test_a_database_error_without_a_changed_row_still_takes_the_safe_path(
    factory: sessionmaker[Session],
) -> None:
    """A duplicate key changes no row, but the error is the database's: the batch runs
    again with savepoints rather than trusting the transaction it came from."""
    writer = GroupCommitter(factory)
    calls: list[str] = []
    futures = _queue(writer, [_insert("a", calls), _insert("a", calls), _insert("c", calls)])
    assert futures[0].result() == "a" and futures[2].result() == "c"
    with pytest.raises(IntegrityError):
        futures[1].result()
    assert calls == ["a", "a", "a", "a", "c"] and _rows(factory) == ["a", "c"]


def test_a_unit_that_left_a_pending_change_takes_the_safe_path(
    factory: sessionmaker[Session],
) -> None:
    """An ORM object added but not yet flushed is a write to come: no row has changed, so
    only the session's pending state tells; the batch is run again with savepoints."""
    writer = GroupCommitter(factory)
    calls: list[str] = []

    def adds_then_fails(session: Session) -> None:
        calls.append("x")
        session.add(SettingRow(key="k", value="v", updated_at=datetime.now(UTC)))
        raise ValueError("refused after adding")

    futures = _queue(writer, [_insert("a", calls), adds_then_fails, _insert("c", calls)])
    with pytest.raises(ValueError, match="after adding"):
        futures[1].result()
    assert calls == ["a", "x", "a", "x", "c"] and _rows(factory) == ["a", "c"]


def test_a_unit_that_queued_lifecycle_steps_takes_the_safe_path(
    factory: sessionmaker[Session],
) -> None:
    """Steps queued for the batch's end are writes too; the failing unit's are dropped
    with it, and nobody else's."""
    writer = GroupCommitter(factory)
    calls: list[str] = []

    def queues_then_fails(session: Session) -> None:
        calls.append("x")
        session.info.setdefault(svc._STEPS, ([], []))
        assert svc.queued_steps(session) == 0
        pending = session.info[svc._STEPS]
        pending[0].append(("row", {})), pending[1].append({})
        raise ValueError("refused after queueing")

    futures = _queue(writer, [_insert("a", calls), queues_then_fails, _insert("c", calls)])
    with pytest.raises(ValueError, match="after queueing"):
        futures[1].result()
    assert futures[2].result() == "c"
    assert calls == ["a", "x", "a", "x", "c"] and _rows(factory) == ["a", "c"]


def test_a_lone_failing_unit_leaves_nothing(factory: sessionmaker[Session]) -> None:
    writer = GroupCommitter(factory)
    [future] = _queue(writer, [_failing_after_write("z")])
    with pytest.raises(ValueError):
        future.result()
    assert _rows(factory) == []


def test_a_batch_that_succeeds_runs_each_unit_once(factory: sessionmaker[Session]) -> None:
    writer = GroupCommitter(factory)
    calls: list[str] = []
    futures = _queue(writer, [_insert(x, calls) for x in "pqrs"])
    assert [f.result() for f in futures] == list("pqrs")
    assert calls == list("pqrs") and _rows(factory) == list("pqrs")


def test_a_failed_commit_answers_everyone_with_its_error(
    factory: sessionmaker[Session],
) -> None:
    writer = GroupCommitter(factory)

    def refuse_commit(session: Session) -> None:
        raise RuntimeError("disk full")

    event.listen(factory, "before_commit", refuse_commit)
    futures = _queue(writer, [_insert("a"), _insert("b")])
    for f in futures:
        with pytest.raises(RuntimeError, match="disk full"):
            f.result()
    event.remove(factory, "before_commit", refuse_commit)
    assert _rows(factory) == []


def test_concurrent_callers_are_batched_and_all_answered(
    factory: sessionmaker[Session],
) -> None:
    writer = GroupCommitter(factory)
    commits: list[int] = []
    event.listen(factory, "after_commit", lambda s: commits.append(1))
    results: list[str] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        for i in range(20):
            got = writer.run(_insert(f"{n}-{i}"))
            with lock:
                results.append(got)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 160 and len(_rows(factory)) == 160
    assert len(commits) < 160  # several callers shared a commit
