"""Group commit: one writer thread runs queued units of work, many per transaction.

Each acknowledged request must be committed first, and a commit on SQLite with
``synchronous=FULL`` costs an fsync.  With one transaction per HTTP request, concurrent
requests queue on SQLite's write lock, whose busy handler *sleeps* between retries: that
is where tail latency came from.  Here requests are handed to a single writer that takes
whatever has queued up (up to ``max_batch``), runs the units (a failing unit rolls back
only itself: see :meth:`GroupCommitter._run_batch`), commits once, and only then releases
every caller.
The guarantee is unchanged ("durable before acknowledged"); the fsync and the lock are
shared.

With several server processes on one SQLite file (``safehaven serve --workers N``) each has
its own writer, and they meet at SQLite's lock.  SQLite's busy handler polls with growing
sleeps (1, 2, 5, 10 ... ms), so a writer that just missed the lock idles while the other
commits.  ``lock_path`` adds an ``flock`` on a file beside the database, taken before
``BEGIN IMMEDIATE`` and released after the commit: the kernel wakes the waiting writer the
moment it is free.  It orders writers; SQLite's own lock still guarantees correctness, so
a CLI command that does not take the file lock is merely slower to get in, never unsafe.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from safehaven.service.requests import deferred_steps, drop_steps_after, queued_steps
from safehaven.store.db import rows_changed, transaction

T = TypeVar("T")
_Item = tuple[Callable[[Session], Any], "Future[Any]"]


class GroupCommitter:
    def __init__(self, factory: sessionmaker[Session], *, max_batch: int = 64,
                 lock_path: Path | None = None) -> None:
        self.factory = factory
        self.max_batch = max_batch
        self.lock_path = lock_path
        self._lock_fd: int | None = None
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def run(self, unit: Callable[[Session], T]) -> T:
        """Run ``unit`` in the writer's transaction; return once it is committed."""
        return self.submit(unit).result()

    def submit(self, unit: Callable[[Session], T]) -> Future[T]:
        """Queue ``unit``; its future resolves after the commit (the writer process's way
        in, see ``api/writer_process.py``)."""
        self._ensure_thread()
        future: Future[T] = Future()
        self._queue.put((unit, future))
        return future

    async def run_async(self, unit: Callable[[Session], T]) -> T:
        """:meth:`run` for the event loop: the writer wakes the awaiting request directly,
        without parking a thread-pool thread on the result for the length of the commit."""
        return await asyncio.wrap_future(self.submit(unit))

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="safehaven-writer", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._run_batch(batch)

    @contextmanager
    def _between_processes(self) -> Iterator[None]:
        if self.lock_path is None:
            yield
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # blocks without the GIL
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _run_batch(self, batch: list[_Item]) -> None:
        """Run a batch in one transaction and release every caller after the commit.

        Units nearly always succeed, so the batch first runs without a savepoint per unit
        (two statements and an ORM nested transaction less per request, inside the lock
        everyone waits for).  A unit that fails *before writing anything* (a verdict on a
        request another reviewer has just closed, a scope or state check: the usual
        failures) is simply answered with its error and the batch goes on; see
        :func:`_left_nothing`.  If a unit fails after writing, the whole transaction is
        rolled back: a lone unit's failure is simply its answer; a batch is run again with
        a savepoint per unit, so only the failing unit rolls back.  (Units are functions
        of the database state and their request, so running one again after a rollback is
        safe.)
        """
        try:
            outcomes = self._attempt(batch, savepoints=False)
        except _UnitFailed as failed:
            if len(batch) == 1:
                batch[0][1].set_exception(failed.error)
                return
            try:
                outcomes = self._attempt(batch, savepoints=True)
            except Exception as exc:
                self._fail(batch, exc)
                return
        except Exception as exc:  # the commit itself failed: nobody is acknowledged
            self._fail(batch, exc)
            return
        for future, value, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    @staticmethod
    def _fail(batch: list[_Item], exc: BaseException) -> None:
        for _, future in batch:
            future.set_exception(exc)

    def _attempt(
        self, batch: list[_Item], *, savepoints: bool
    ) -> list[tuple[Future[Any], Any, BaseException | None]]:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        with self._between_processes(), transaction(self.factory) as session:
            if not savepoints:
                # One write of every unit's lifecycle steps (transitions, ledger, rollup)
                # for the whole batch: see ``service.requests.deferred_steps``.
                with deferred_steps(session):
                    for unit, future in batch:
                        mark = _write_mark(session)
                        try:
                            outcomes.append((future, unit(session), None))
                        except Exception as exc:
                            if not _left_nothing(session, mark, exc):
                                raise _UnitFailed(exc) from exc
                            outcomes.append((future, None, exc))
                return outcomes
            for unit, future in batch:
                queued = queued_steps(session)
                try:
                    with session.begin_nested():
                        outcomes.append((future, unit(session), None))
                except Exception as exc:  # the unit's own failure: only it rolls back
                    drop_steps_after(session, queued)  # with the steps it had queued
                    outcomes.append((future, None, exc))
        return outcomes


def _write_mark(session: Session) -> tuple[int, int] | None:
    """Where the transaction stands: rows changed, steps queued (``None``: unknowable)."""
    changed = rows_changed(session)
    return None if changed is None else (changed, queued_steps(session))


def _left_nothing(session: Session, mark: tuple[int, int] | None,
                  exc: BaseException) -> bool:
    """Whether a unit that raised left the batch's transaction exactly as it found it.

    Why: a reviewer's verdict on a request another reviewer has just closed is refused
    (409), and under load that is a large share of verdicts; rolling back and re-running
    the whole batch for each one (every submit and bulk row in it, a second time, with a
    savepoint each) cost the writer a sixth of its time.  Such failures are checks that
    run before any write.  Proof that nothing was written, all of it required:

    * no row changed on the connection (SQLite's own counter, so ORM flushes, Core and
      raw driver cursors all count) and no lifecycle step was queued for later;
    * no pending ORM change in the session, from this unit or any other (a conservative
      test: an earlier unit's unflushed change also sends the batch down the safe path);
    * the error is the unit's own, not the database's or SQLAlchemy's (after those the
      transaction may be unusable), and the session's transaction is still active.
    """
    return (mark is not None
            and not isinstance(exc, SQLAlchemyError | sqlite3.Error)
            and session.is_active
            and not (session.new or session.dirty or session.deleted)
            and _write_mark(session) == mark)


class _UnitFailed(Exception):
    """A unit raised during a batch run without savepoints (carries the unit's error)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error
