"""``safehaven backup`` / ``restore``: a snapshot taken while the server writes restores,
verifies (integrity, lifecycle, ledger with its signed heads) and serves again; a damaged
backup is refused without touching the current database; the private key stays out of a
backup unless asked for."""

from __future__ import annotations

import json
import os
import random
import stat
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from safehaven.cli import app
from safehaven.ledger import keys
from tests.faults.harness import (
    Acks,
    Workspace,
    check_invariants,
    drive,
    make_workspace,
    sign_head,
    start_server,
)

runner = CliRunner()


def cli(ws_home: Path, *args: str, code: int = 0) -> Any:
    env = {"SAFEHAVEN_HOME": str(ws_home),
           "SAFEHAVEN_DATABASE_URL": f"sqlite:///{ws_home / 'safehaven.db'}"}
    res = runner.invoke(app, list(args), env=env)
    assert res.exit_code == code, res.output
    return res


@pytest.fixture(scope="module")
def busy_backup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path, Acks]:
    """A backup taken in the middle of mixed traffic (the server keeps writing)."""
    ws = make_workspace(tmp_path_factory.mktemp("live") / "ws")
    sign_head(ws)  # a signed head (and the key pair) from before the traffic
    dest = tmp_path_factory.mktemp("backups") / "b1"
    server = start_server(ws)
    acks: list[Acks] = []
    try:
        t = threading.Thread(target=lambda: acks.append(
            drive(server, ws, "bk", seconds=4.0, rng=random.Random(3), kill=False)))
        t.start()
        threading.Event().wait(2.0)  # let traffic get going; snapshot while it continues
        cli(ws.home, "backup", str(dest), "--json")
        t.join(timeout=120)
    finally:
        server.kill()
    return ws, dest, acks[0]


@pytest.mark.slow
def test_snapshot_under_writes_restores_and_verifies(
    busy_backup: tuple[Workspace, Path, Acks], tmp_path: Path
) -> None:
    ws, dest, acks = busy_backup
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["ledger"]["size"] > 0 and manifest["ledger"]["heads"] >= 1
    assert manifest["includes_private_key"] is False
    assert not (dest / keys.KEY_FILE).exists()  # the private key stays out by default
    assert (dest / keys.PUBLIC_KEY_FILE).exists()

    target = tmp_path / "restored"
    res = cli(target, "restore", str(dest), "--json")
    assert json.loads(res.stdout)["ledger_ok"] is True
    verified = cli(target, "ledger", "verify", "--json")
    assert json.loads(verified.stdout)["ok"] is True
    restored = Workspace(target, ws.token)
    assert check_invariants(restored) == []

    # The restored workspace serves: an acknowledged request that made it into the snapshot
    # replays as itself (same id), it is not created again.
    (target / "register.jsonl").write_text(ws.register.read_text())
    # A restored workspace without the private key signs new heads with a new key; give it
    # the old one as an operator would from the secret store.
    os.link(ws.home / keys.KEY_FILE, target / keys.KEY_FILE)
    server = start_server(restored)
    try:
        with httpx.Client(base_url=server.base,
                          headers={"Authorization": f"Bearer {ws.token}"}) as c:
            listed = {r["id"] for r in c.get("/v1/requests?limit=1000").json()["requests"]}
            key = next(k for k, v in acks.submits.items() if v in listed)
            again = c.post("/v1/requests", json=acks.bodies[key])
            assert again.status_code == 200 and again.json()["id"] == acks.submits[key]
    finally:
        server.kill()
    assert check_invariants(restored) == []


@pytest.mark.slow
def test_damaged_backup_is_refused_and_current_database_kept(
    busy_backup: tuple[Workspace, Path, Acks], tmp_path: Path
) -> None:
    _, dest, _ = busy_backup
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in dest.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    db = bytearray((bad / "safehaven.db").read_bytes())
    db[len(db) // 2] ^= 0xFF
    (bad / "safehaven.db").write_bytes(bytes(db))
    target = tmp_path / "current"
    target.mkdir()
    (target / "safehaven.db").write_bytes(b"the current database")
    res = cli(target, "restore", str(bad), "--force", code=2)
    assert "sha256 differs" in res.output
    assert (target / "safehaven.db").read_bytes() == b"the current database"
    refuse = cli(target, "restore", str(dest), code=2)  # no --force: never overwrite
    assert "exists" in refuse.output


@pytest.mark.slow
def test_private_key_only_on_request_and_0600(
    busy_backup: tuple[Workspace, Path, Acks], tmp_path: Path
) -> None:
    ws, _, _ = busy_backup
    dest = tmp_path / "with-key"
    cli(ws.home, "backup", str(dest), "--include-key")
    mode = stat.S_IMODE((dest / keys.KEY_FILE).stat().st_mode)
    assert mode == 0o600
    target = tmp_path / "restored"
    cli(target, "restore", str(dest))
    assert stat.S_IMODE((target / keys.KEY_FILE).stat().st_mode) == 0o600
    assert (target / keys.KEY_FILE).read_bytes() == (ws.home / keys.KEY_FILE).read_bytes()


def test_postgresql_points_to_pg_dump(tmp_path: Path) -> None:
    res = runner.invoke(app, ["backup", str(tmp_path / "x"), "--database-url",
                              "postgresql://u:p@127.0.0.1:1/db"])
    assert res.exit_code == 2 and "pg_dump" in res.output


def test_non_empty_destination_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep").write_text("x")
    res = cli(ws.home, "backup", str(dest), code=2)
    assert "not empty" in res.output
