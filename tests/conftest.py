"""Shared fixtures: a migrated store on SQLite and on a real PostgreSQL server.

PostgreSQL comes from ``SAFEHAVEN_TEST_PG_URL`` (set by ``scripts/test.sh``, which finds,
starts or installs a server).  Each test gets a fresh database cloned from a migrated
template.  If no server can be reached the PostgreSQL variants are skipped and the run
ends with a banner saying so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from safehaven.agreements import load_dir
from safehaven.domain.decision import AgreementSet
from safehaven.store.db import make_engine, session_factory, upgrade

PG_URL = os.environ.get(
    "SAFEHAVEN_TEST_PG_URL", "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres"
)
_pg_problem: list[str] = []


def _admin_engine() -> Engine:
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """Name of a migrated template database, or skip loudly if PostgreSQL is unavailable."""
    try:
        admin = _admin_engine()
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # pragma: no cover - depends on the machine
        _pg_problem.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
        pytest.skip(f"PostgreSQL unavailable at {make_url(PG_URL).render_as_string()}: {exc}")
    name = f"safehaven_tmpl_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _fresh_pg(template: str) -> tuple[str, Engine]:
    name = f"safehaven_t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    return name, make_engine(url)


def _drop_pg(name: str) -> None:
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[Engine]:
    """A migrated, empty store; every test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path}/store.db")
        upgrade(eng)
        yield eng
        eng.dispose()
        return
    template = request.getfixturevalue("pg_template")
    name, eng = _fresh_pg(template)
    yield eng
    eng.dispose()
    _drop_pg(name)


@pytest.fixture(scope="module")
def pg_module_url(pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database (store schema included) shared by one module's tests:
    for tests that build something large once, such as the register's candidate index."""
    name, eng = _fresh_pg(pg_template)
    url = eng.url.render_as_string(hide_password=False)
    eng.dispose()
    yield url
    _drop_pg(name)


@pytest.fixture
def database_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture(scope="session")
def agreements() -> AgreementSet:
    return load_dir()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _pg_problem:
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(
            f"PostgreSQL tests were SKIPPED: no server could be reached ({_pg_problem[0]})",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(bar, red=True, bold=True)
