"""Kill the server (SIGKILL) in the middle of a bulk upload: every row it acknowledged is
still there after a restart, because a result line is written only after its commit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from safehaven.agreements import load_dir
from safehaven.service import accounts
from safehaven.store.db import open_store, session_factory, transaction
from tests.builders import POLICE

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(url: str, home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SAFEHAVEN_HOME": str(home), "SAFEHAVEN_DATABASE_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from safehaven.cli import main; main()", "serve",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")


def test_acknowledged_bulk_rows_survive_sigkill(database_url: str, tmp_path: Path) -> None:
    engine = open_store(database_url)
    with transaction(session_factory(engine)) as s:
        token, _ = accounts.create_agency_token(
            s, load_dir(), "metropolitan-police", scope=None, label="kill",
            at=datetime.now(UTC))
    engine.dispose()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    rows = "".join(json.dumps({**POLICE, "request_id": f"k-{i}"}) + "\n" for i in range(1000))

    port = _free_port()
    server_proc = _start(database_url, tmp_path, port)
    acked: list[str] = []
    try:
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/requests/bulk", content=rows,
                          headers=headers, timeout=60) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                result = json.loads(line)
                assert result["status"] == 201, result
                acked.append(result["id"])
                if len(acked) == 150:
                    server_proc.send_signal(signal.SIGKILL)
                    break
    except httpx.TransportError:
        pass
    finally:
        server_proc.kill()
    server_proc.wait(timeout=10)
    assert len(acked) == 150

    port = _free_port()
    again = _start(database_url, tmp_path, port)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)
        stored = {r["id"] for r in client.get("/v1/requests?limit=1000").json()["requests"]}
        assert set(acked) <= stored
        assert len(stored) < 1000  # the kill really landed mid-upload
        # Resubmitting the whole file is safe: acknowledged rows replay, the rest are created.
        with client.stream("POST", "/v1/requests/bulk", content=rows) as response:
            lines = [json.loads(x) for x in response.iter_lines()]
        statuses = [x["status"] for x in lines[:-1]]
        assert statuses.count(200) == len(stored) and statuses.count(201) == 1000 - len(stored)
        client.close()
    finally:
        again.kill()
        again.wait(timeout=10)

