"""Engines, workspace location and schema migration.

SQLite is the embedded default (a file in ``SAFEHAVEN_HOME``); PostgreSQL is chosen with
``--database-url`` or ``SAFEHAVEN_DATABASE_URL``.  SQLite runs in WAL mode with
``synchronous=FULL`` because a request is acknowledged only after its commit: the commit
must survive a power cut, not just a process crash.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic_core
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

HOME_ENV = "SAFEHAVEN_HOME"
#: Execution option marking a connection's transactions as read-only (see
#: :func:`read_only_factory`).
READ_ONLY = "safehaven_read_only"
URL_ENV = "SAFEHAVEN_DATABASE_URL"


def workspace_home() -> Path:
    return Path(os.environ.get(HOME_ENV, ".safehaven")).expanduser()


def resolve_url(database_url: str | None = None) -> str:
    """Explicit URL, else ``SAFEHAVEN_DATABASE_URL``, else the workspace SQLite file."""
    url = database_url or os.environ.get(URL_ENV)
    if url:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url
    home = workspace_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'safehaven.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit BEGIN is
    # deferred, which lets two writers read the same cap count before either writes).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _json_dumps(value: Any) -> str:
    """JSON columns (a request's body, a decision's rules) encoded by pydantic-core.

    Why: every submit stores a body and seventeen rules with their reasons, inside the
    write lock every other writer waits for, and the standard library's encoder was the
    largest single cost there.  The stored text is compact UTF-8 JSON either way; nothing
    hashes it (content hashes use ``domain.canonical``).
    """
    return pydantic_core.to_json(value).decode("utf-8")


def _json_loads(text: str | bytes) -> Any:
    return pydantic_core.from_json(text)


def make_engine(url: str) -> Engine:
    json_codec: dict[str, Any] = {"json_serializer": _json_dumps,
                                  "json_deserializer": _json_loads}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **json_codec)
        event.listen(engine, "connect", _sqlite_pragmas)

        # Take the write lock at BEGIN so read-then-write use cases (caps, idempotency)
        # cannot interleave between two processes.  A read-only transaction takes no lock:
        # in WAL mode it reads a snapshot and never waits for (or delays) a writer.
        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            read_only = conn.get_execution_options().get(READ_ONLY)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=True, **json_codec)

    @event.listens_for(engine, "begin")
    def _read_only(conn: Any) -> None:
        # PostgreSQL enforces it: a read path that tries to write fails loudly in tests
        # instead of silently taking locks.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")

    return engine


def _alembic_config(engine: Engine) -> Config:
    migrations = Path(str(resources.files("safehaven.store") / "migrations"))
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    command.upgrade(_alembic_config(engine), "head")


def open_store(database_url: str | None = None, *, migrate: bool = True) -> Engine:
    engine = make_engine(resolve_url(database_url))
    if migrate:
        upgrade(engine)
    return engine


def rows_changed(session: Session) -> int | None:
    """Rows inserted, updated or deleted so far on the session's connection, whatever issued
    the statement (ORM, Core or a raw driver cursor); ``None`` where the driver cannot say.

    Why: the group-commit writer (``api/writer.py``) asks it before and after a unit of
    work that failed, to know whether the unit wrote anything that would have to be rolled
    back.  SQLite counts every changed row (``sqlite3_total_changes``); psycopg has no such
    counter, so on PostgreSQL the answer is "unknown" and the writer stays on the safe path.
    """
    dbapi = session.connection().connection.dbapi_connection
    changes = getattr(dbapi, "total_changes", None)
    return changes if isinstance(changes, int) else None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_only_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for read paths (polls, queues, reports, proofs).

    Why: every write transaction on SQLite starts with ``BEGIN IMMEDIATE`` (so a cap check
    and its increment cannot interleave), and a read that did the same would queue behind
    the writer and stall it in turn.  These sessions ``BEGIN`` deferred, reading a WAL
    snapshot without the write lock; on PostgreSQL they are ``READ ONLY`` transactions.
    A snapshot is consistent, so a page never shows half of a write.
    """
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@contextmanager
def read_connection(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A read-only snapshot, as :func:`read_only_factory`'s sessions, on a plain connection.

    Why: the agency's poll and list are the most frequent calls of all and run one or two
    prebuilt Core statements; a Session around them (its begin, its ORM execution path for
    a Core statement, its commit) cost as much again as the statements themselves.  The
    transaction is the same (``BEGIN`` deferred on SQLite, ``READ ONLY`` on PostgreSQL,
    from the factory's engine options) and ends when the block does.
    """
    bind = factory.kw["bind"]
    with bind.connect() as conn:
        yield conn


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session
