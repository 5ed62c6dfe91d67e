"""The writer process of ``serve --workers N`` on SQLite (``api/writer_process.py``).

Real processes and a real store: the writer is spawned as ``serve`` spawns it, units are
the API's own (a submit), and what it answers is checked against the database.
"""

from __future__ import annotations

import os
import pickle
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Client
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from safehaven.agreements import load_dir
from safehaven.api.agencies import Submitted, prepare_one, submit_one
from safehaven.api.context import ApiConfig
from safehaven.api.errors import ApiError
from safehaven.api.writer_process import (
    RemoteWriter,
    WriterProcess,
    WriterUnavailableError,
    restart_delay,
    sweep_stale_dirs,
)
from safehaven.domain.request import TracingRequest, parse_request_obj
from safehaven.ledger.verify import verify_log
from safehaven.service import requests as svc
from safehaven.service.accounts import AgencyPrincipal
from safehaven.store.db import open_store, session_factory, transaction
from safehaven.store.models import RequestRow
from tests.faults.harness import AGENCY, POLICE


@dataclass
class Rig:
    process: WriterProcess
    remote: RemoteWriter
    engine: Engine
    cfg: ApiConfig  # this process's, for preparing requests as a worker does


def _start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Engine, WriterProcess]:
    """A migrated store and a writer process on it, started as ``serve`` starts one."""
    monkeypatch.setenv("SAFEHAVEN_HOME", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_store(url)
    return engine, WriterProcess({"database_url": url, "agreements_dir": None,
                                  "register": None, "print_codes": False,
                                  "secure_cookies": False, "supervisor_pid": os.getpid()})


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    engine, process = _start(tmp_path, monkeypatch)
    remote = RemoteWriter(process.address, process.key)
    try:
        remote.wait_ready(timeout=120)
        yield Rig(process, remote, engine, ApiConfig(engine=engine, agreements=load_dir()))
    finally:
        remote.close()
        process.stop()
        engine.dispose()


PRINCIPAL = AgencyPrincipal(AGENCY, frozenset({POLICE["agreement"]}), token_id=1)


def _request(key: str, **changes: object) -> TracingRequest:
    return parse_request_obj({**POLICE, "request_id": key, **changes})


def _submit(rig: Rig, key: str, principal: AgencyPrincipal = PRINCIPAL,
            **changes: object) -> Submitted:
    req = _request(key, **changes)
    prepared = prepare_one(rig.cfg, principal, req)
    result: Submitted = rig.remote.submit(submit_one, (principal, req, prepared)).result(60)
    return result


def test_a_submit_is_committed_before_it_is_answered(rig: Rig) -> None:
    done = _submit(rig, "wp-1")
    assert done.result.created and done.state == "in_review"
    # Read straight after the answer, from another connection: already there.
    with transaction(session_factory(rig.engine)) as session:
        row = session.execute(select(RequestRow).where(
            RequestRow.public_id == done.result.public_id)).scalar_one()
        assert (row.requester, row.request_key, row.state) == (AGENCY, "wp-1", "in_review")
    with rig.engine.connect() as conn:
        assert verify_log(conn, None).ok
    again = _submit(rig, "wp-1")  # idempotent across the process boundary too
    assert not again.result.created and again.result.public_id == done.result.public_id


def test_a_refusal_in_the_writer_reaches_the_worker_as_the_same_error(rig: Rig) -> None:
    _submit(rig, "wp-2")
    with pytest.raises(ApiError) as conflict:
        _submit(rig, "wp-2", made_on="2017-09-02")  # same key, different body
    assert conflict.value.status == 409
    assert conflict.value.problems and "request_id" in conflict.value.problems[0]
    outsider = AgencyPrincipal("someone-else", PRINCIPAL.agreements, token_id=2)
    req = _request("wp-3")
    with pytest.raises(ApiError) as forbidden:
        # Scope is checked again inside the writer, whatever the worker prepared.
        rig.remote.submit(submit_one, (outsider, req, None)).result(60)
    assert forbidden.value.status == 403 and "requester" in forbidden.value.error
    with transaction(session_factory(rig.engine)) as session:
        keys = set(session.execute(select(RequestRow.request_key)).scalars())
    assert keys == {"wp-2"}


def test_an_argument_that_cannot_cross_fails_at_once_and_the_link_survives(rig: Rig) -> None:
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        rig.remote.submit(submit_one, (PRINCIPAL, lambda: None, None))
    assert _submit(rig, "wp-4").result.created


def test_when_the_writer_dies_writes_get_503_and_a_new_writer_takes_over(rig: Rig) -> None:
    assert _submit(rig, "wp-5").result.created
    old = rig.process.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    with pytest.raises(WriterUnavailableError) as unavailable:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until this worker notices the loss
            _submit(rig, f"wp-probe-{time.monotonic_ns()}")
            time.sleep(0.05)
    assert unavailable.value.status == 503
    assert unavailable.value.headers == {"Retry-After": "2"}
    rig.remote.wait_ready(timeout=120)
    assert rig.process.restarts >= 1 and rig.process.pid != old
    assert _submit(rig, "wp-6").result.created
    with transaction(session_factory(rig.engine)) as session:
        assert svc.get_request(session, _submit(rig, "wp-6").result.public_id).state == \
            "in_review"
    with rig.engine.connect() as conn:
        assert verify_log(conn, None).ok


def test_only_this_servers_processes_can_reach_the_writer(rig: Rig) -> None:
    address = Path(rig.process.address)
    assert stat.S_IMODE(address.stat().st_mode) == 0o600
    assert stat.S_IMODE(address.parent.stat().st_mode) == 0o700
    from multiprocessing import AuthenticationError

    with pytest.raises(AuthenticationError):
        Client(str(address), family="AF_UNIX", authkey=b"not the key")
    assert _submit(rig, "wp-7").result.created  # and it still serves the real workers


def test_api_errors_survive_pickling() -> None:
    error = ApiError(429, "too many", ["rate: slow down"], headers={"Retry-After": "3"})
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status, copy.error, copy.problems, copy.headers) == \
        (429, "too many", ["rate: slow down"], {"Retry-After": "3"})
    lost = pickle.loads(pickle.dumps(WriterUnavailableError("gone")))
    assert isinstance(lost, WriterUnavailableError)
    assert lost.status == 503 and lost.problems == ["(writer): gone"]


def test_stopping_removes_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, process = _start(tmp_path, monkeypatch)
    engine.dispose()
    remote = RemoteWriter(process.address, process.key)
    remote.wait_ready(timeout=120)
    remote.close()
    process.stop()
    assert not Path(process.address).parent.exists()
    with pytest.raises(WriterUnavailableError):
        RemoteWriter(process.address, process.key).wait_ready(timeout=0.5)


def test_a_writer_that_keeps_dying_at_start_is_restarted_ever_more_slowly() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert restart_delay(7) == 30.0 and restart_delay(10_000) == 30.0  # capped, no overflow


def test_only_dead_servers_socket_directories_are_swept(tmp_path: Path) -> None:
    """``serve`` killed with SIGKILL leaves its socket directory; the next ``serve`` removes
    it, and nothing else: not a live server's, not a file, not a name without a pid."""
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()  # reaped: its pid names no process (unless reused, then kept: safe)
    dead = tmp_path / f"safehaven-writer-{dead_pid.pid}-abc"
    live = tmp_path / f"safehaven-writer-{os.getpid()}-def"
    for d in (dead, live):
        d.mkdir()
        (d / "writer.sock").write_bytes(b"")
    not_a_dir = tmp_path / f"safehaven-writer-{dead_pid.pid}-file"
    not_a_dir.write_text("x")
    no_pid = tmp_path / "safehaven-writer-abc"
    no_pid.mkdir()
    assert sweep_stale_dirs(str(tmp_path)) == [str(dead)]
    assert not dead.exists() and live.exists() and not_a_dir.exists() and no_pid.exists()
