"""``safehaven ledger``: heads, proofs handed out, and the offline check anyone can run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from safehaven.cli import app
from safehaven.ledger import keys, log
from safehaven.store.db import open_store, session_factory, transaction

runner = CliRunner()


@pytest.fixture(autouse=True)
def _workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SAFEHAVEN_DATABASE_URL", raising=False)
    return workspace


def append(n: int) -> None:
    engine = open_store()
    with transaction(session_factory(engine)) as s:
        start = log.size(s)
        log.append_many(s, [{"type": "test", "n": i} for i in range(start, start + n)])
    engine.dispose()


def run(*args: str, code: int = 0) -> Any:
    res = runner.invoke(app, ["ledger", *args])
    assert res.exit_code == code, res.stdout + (res.stderr if res.stderr_bytes else "")
    return res


def save(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def published(tmp_path: Path) -> str:
    """Copy the public key out of the workspace, as a verifier would receive it."""
    pem = run("public-key").stdout
    return save(tmp_path, "published.pub", pem)


def test_head_verify_prove_and_check_offline(tmp_path: Path, workspace: Path) -> None:
    append(5)
    old = save(tmp_path, "old.json", run("head", "--json").stdout)
    assert json.loads(Path(old).read_text())["size"] == 5
    assert (workspace / keys.KEY_FILE).stat().st_mode & 0o777 == 0o600
    append(8)
    new = save(tmp_path, "new.json", run("head", "--json").stdout)
    pub = published(tmp_path)

    verified = json.loads(run("verify", "--json").stdout)
    assert verified == {**verified, "ok": True, "size": 13, "heads": 2, "first_bad_entry": None}

    incl = save(tmp_path, "incl.json", run("prove-inclusion", "3").stdout)
    assert json.loads(Path(incl).read_text())["size"] == 13  # latest head by default
    assert "ok" in run("check-proof", incl, "--public-key", pub, "--head", new).stdout
    cons = save(tmp_path, "cons.json", run("prove-consistency", "5", "13").stdout)
    assert "ok" in run("check-proof", cons, "--public-key", pub, "--head", old).stdout
    # The proof is not about a head of size 5, so it cannot vouch for that one.
    res = run("check-proof", incl, "--public-key", pub, "--head", old, code=1)
    assert "not about your head" in res.stderr


def test_check_proof_rejects_altered_documents(tmp_path: Path) -> None:
    append(6)
    run("head")
    pub = published(tmp_path)
    doc = json.loads(run("prove-inclusion", "2").stdout)

    def check(changed: dict[str, Any]) -> str:
        res = run("check-proof", save(tmp_path, "p.json", json.dumps(changed)),
                  "--public-key", pub, "--json", code=1)
        return " ".join(json.loads(res.stdout)["problems"])

    entry = doc["entry"].replace('"n":2', '"n":9')
    assert "inclusion proof for entry 2" in check({**doc, "entry": entry})
    assert "sequence number" in check({**doc, "index": 3})
    bad_root = {**doc["head"], "root": "00" * 32}
    assert "signature does not verify" in check({**doc, "head": bad_root})
    other = keys.public_pem(Ed25519PrivateKey.generate().public_key())
    res = run("check-proof", save(tmp_path, "q.json", json.dumps(doc)),
              "--public-key", save(tmp_path, "other.pub", other.decode()), code=1)
    assert "signature does not verify" in res.stderr
    assert "no validly signed head" in check({**doc, "head": None})


def test_inclusion_needs_a_signed_head_and_clean_errors(tmp_path: Path) -> None:
    append(2)
    assert "not covered by a signed head" in run("prove-inclusion", "0", code=2).stderr
    assert "beyond" in run("prove-inclusion", "0", "--size", "9", code=2).stderr
    res = run("check-proof", save(tmp_path, "x.json", "{nope"), "--public-key",
              published(tmp_path), code=2)
    assert "not JSON" in res.stderr


def test_verify_without_heads_or_key_still_checks_entries() -> None:
    append(3)
    assert "ok: 3 entries, 0 signed head(s)" in run("verify").stdout
