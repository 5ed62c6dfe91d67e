"""Storage faults: a locked database and a full disk give clean 503s and corrupt nothing.

*Locked*: another process holds SQLite's write lock for longer than the busy timeout (set
low here so the test is quick).  Every call that needs to write answers ``503 storage
unavailable`` in the usual error shape with ``Retry-After``, stores nothing, and works again
once the lock is released.  Reads do not queue behind the lock at all: they read a WAL
snapshot (``store.db.read_only_factory``), so a poll still answers while a writer holds it.

*Disk full*: the server runs under ``RLIMIT_FSIZE`` just above the database's size (the
portable stand-in for a small tmpfs: a write past the limit fails with ``EFBIG``, which
SQLite reports as an I/O error, as it does ``ENOSPC``).  Submissions succeed until the
files reach the limit, then fail cleanly; the server stays up; after a restart without
the limit every acknowledged request is there once, integrity and the ledger verify, and
the rejected submissions can simply be sent again.
"""

from __future__ import annotations

import resource
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from safehaven.api.app import create_app
from safehaven.ledger.verify import verify_log
from safehaven.service import accounts
from safehaven.store.db import make_engine, session_factory, transaction, upgrade
from safehaven.store.models import RequestRow
from tests.api.conftest import make_config
from tests.faults.harness import (
    POLICE,
    Acks,
    check_invariants,
    make_workspace,
    sign_head,
    start_server,
)


def _clean_503(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json() == {"error": "storage unavailable",
                        "problems": ["(storage): nothing was stored; retry later"]}
    assert r.headers["Retry-After"] == "5"


def test_locked_database_gives_clean_503_and_stores_nothing(
    tmp_path: Path, agreements: Any
) -> None:
    path = tmp_path / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)

    @event.listens_for(engine, "connect")
    def _quick(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=300")  # after the default 30 s

    engine.dispose()
    with transaction(session_factory(engine)) as s:
        token, _ = accounts.create_agency_token(
            s, agreements, "metropolitan-police", scope=None, label="lock", at=datetime.now(UTC))
    app = create_app(make_config(engine, agreements))
    body = {**POLICE, "request_id": "locked-1"}
    blocker = sqlite3.connect(path, isolation_level=None)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        blocker.execute("BEGIN IMMEDIATE")
        try:
            _clean_503(client.post("/v1/requests", json=body))
            polled = client.get("/v1/requests")
            assert polled.status_code == 200, polled.text
            assert polled.json() == {"requests": []}
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        with transaction(session_factory(engine)) as s:
            assert s.execute(select(func.count()).select_from(RequestRow)).scalar_one() == 0
        again = client.post("/v1/requests", json=body)
        assert again.status_code == 201, again.text
    with engine.connect() as conn:
        assert verify_log(conn, None).ok
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    engine.dispose()


def _fsize_limit(nbytes: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


@pytest.mark.slow
def test_disk_full_gives_clean_errors_and_no_corruption(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    sign_head(ws)
    biggest = max(p.stat().st_size for p in ws.home.glob("safehaven.db*"))
    server = start_server(ws, preexec=_fsize_limit(biggest + 512 * 1024))
    acks = Acks()
    failed: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=server.base, timeout=30,
                          headers={"Authorization": f"Bearer {ws.token}"}) as c:
            for n in range(400):
                body = {**POLICE, "request_id": f"full-{n}"}
                r = c.post("/v1/requests", json=body)
                if r.status_code == 201:
                    acks.submits[body["request_id"]] = r.json()["id"]
                    acks.bodies[body["request_id"]] = body
                    continue
                _clean_503(r)
                failed.append(body)
                if len(failed) >= 5:
                    break
            assert failed, "the size limit never bit: the test proved nothing"
            assert acks.submits, "nothing succeeded before the disk filled"
            # Still up, still answering (health needs no write).
            assert c.get("/v1/health").status_code == 200
    finally:
        server.kill()
    assert check_invariants(ws, acks) == []
    server = start_server(ws)  # restart, no limit: the rejected requests can be sent again
    try:
        with httpx.Client(base_url=server.base, timeout=30,
                          headers={"Authorization": f"Bearer {ws.token}"}) as c:
            for body in failed:
                assert c.post("/v1/requests", json=body).status_code in (200, 201)
    finally:
        server.kill()
    assert check_invariants(ws, acks) == []
