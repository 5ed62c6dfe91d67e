"""The group-commit writer (``api/writer.py``): one transaction per batch, every caller
answered after the commit, and a failing unit rolls back only itself."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from safehaven.api.writer import GroupCommitter
from safehaven.store.db import make_engine, session_factory


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
