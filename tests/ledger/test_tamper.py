"""Tampering with the SQLite file: ``safehaven ledger verify`` must fail and say where.

Each test builds a 40-entry log with signed heads at sizes 10, 25 and 40, then edits the
database the way someone with the file (not the key) could: first dropping the append-only
triggers, as such a person would.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from safehaven.cli import app
from safehaven.ledger import heads, keys, log, merkle
from safehaven.store.db import open_store, session_factory, transaction

runner = CliRunner()
HEAD_SIZES = (10, 25, 40)


@pytest.fixture
def db(workspace: Path, signing_key: Ed25519PrivateKey) -> Path:
    engine = open_store()
    factory = session_factory(engine)
    done = 0
    for size in HEAD_SIZES:
        with transaction(factory) as s:
            log.append_many(s, [{"type": "test", "tag": f"e{i}-x"} for i in range(done, size)])
            heads.sign_head(s, signing_key)
        done = size
    engine.dispose()
    path = workspace / "safehaven.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {name}")
    return path


def verify() -> tuple[int, dict[str, Any]]:
    res = runner.invoke(app, ["ledger", "verify", "--json"])
    return res.exit_code, json.loads(res.stdout)


def sql(path: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    with sqlite3.connect(path) as conn:
        for st in statements:
            conn.execute(st, params if "?" in st else ())


def test_untouched_log_verifies(db: Path) -> None:
    code, report = verify()
    assert (code, report["ok"], report["size"], report["heads"]) == (0, True, 40, 3)
    assert report["first_bad_entry"] is None


def test_a_changed_byte_in_the_file_names_the_entry(db: Path) -> None:
    raw = db.read_bytes()
    at = raw.index(b'"tag":"e17-x"')
    db.write_bytes(raw[:at + 9] + b"y" + raw[at + 10:])  # e17-x -> e17-y, same length
    code, report = verify()
    assert code == 1 and report["first_bad_entry"] == 17
    assert any("entry 17" in p and "edited" in p for p in report["problems"])


def test_edited_event_names_the_entry(db: Path) -> None:
    sql(db, "UPDATE ledger_entries SET event = replace(event, 'e17-x', 'e71-x') WHERE idx = 17")
    code, report = verify()
    assert code == 1 and report["first_bad_entry"] == 17


def test_edit_with_rehashed_leaf_is_caught_by_the_tree_and_the_heads(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        (event,) = conn.execute("SELECT event FROM ledger_entries WHERE idx = 17").fetchone()
        forged = event.replace("e17-x", "e71-x")
        conn.execute("UPDATE ledger_entries SET event = ?, leaf_hash = ? WHERE idx = 17",
                     (forged, merkle.leaf_hash(forged.encode())))
    code, report = verify()
    assert code == 1
    text = "\n".join(report["problems"])
    assert "over entries 16..17 differs" in text  # the stored subtree above it
    assert "head at size 25: root differs" in text and "between 10 and 24" in text


def test_deleted_entry_is_named(db: Path) -> None:
    sql(db, "DELETE FROM ledger_entries WHERE idx = 17")
    code, report = verify()
    assert code == 1 and report["first_bad_entry"] == 17
    assert "deleted" in report["problems"][0]


def test_reordered_entries_are_named(db: Path) -> None:
    sql(db,
        "UPDATE ledger_entries SET idx = -1 WHERE idx = 17",
        "UPDATE ledger_entries SET idx = 17 WHERE idx = 18",
        "UPDATE ledger_entries SET idx = 18 WHERE idx = -1")
    code, report = verify()
    assert code == 1 and report["first_bad_entry"] == 17
    assert "moved" in report["problems"][0]


@pytest.mark.parametrize("also_fix_state", [False, True])
def test_truncated_log_is_named(db: Path, also_fix_state: bool) -> None:
    sql(db, "DELETE FROM ledger_entries WHERE idx >= 30")
    if also_fix_state:  # a careful attacker also rewinds the size: the signed head remembers
        sql(db, "UPDATE ledger_state SET size = 30")
    code, report = verify()
    assert code == 1 and report["first_bad_entry"] == 30
    assert any("truncated" in p for p in report["problems"])


def test_entry_slipped_in_behind_the_logs_back_is_named(db: Path) -> None:
    data = log.encode_leaf({"type": "test", "tag": "sneaky"}, 40)
    sql(db, "INSERT INTO ledger_entries (idx, leaf_hash, event) VALUES (?, ?, ?)",
        params=(40, merkle.leaf_hash(data), data.decode()))
    code, report = verify()
    assert code == 1 and report["first_bad_entry"] == 40


def test_forged_signature_fails(db: Path) -> None:
    sql(db, "UPDATE ledger_heads SET signature = ? WHERE size = 25", params=(bytes(64),))
    code, report = verify()
    assert code == 1
    assert "head at size 25: signature does not verify (forged or wrong key)" in report["problems"]


def test_head_re_signed_with_another_key_fails(db: Path) -> None:
    forger = Ed25519PrivateKey.generate()
    with sqlite3.connect(db) as conn:
        size, root, ts = conn.execute(
            "SELECT size, root, timestamp_ms FROM ledger_heads WHERE size = 40").fetchone()
        conn.execute("UPDATE ledger_heads SET signature = ?, key_id = ? WHERE size = 40",
                     (forger.sign(heads.head_message(size, root, ts)),
                      keys.key_id(forger.public_key())))
    code, report = verify()
    assert code == 1 and any("size 40: signature" in p for p in report["problems"])


def test_tampered_subtree_hash_is_reported(db: Path) -> None:
    sql(db, "UPDATE ledger_nodes SET hash = ? WHERE level = 2 AND idx = 3", params=(bytes(32),))
    code, report = verify()
    assert code == 1 and any("(2, 3) over entries 12..15" in p for p in report["problems"])


def test_text_output_names_the_first_bad_entry(db: Path) -> None:
    sql(db, "DELETE FROM ledger_entries WHERE idx IN (5, 9)")
    res = runner.invoke(app, ["ledger", "verify"])
    assert res.exit_code == 1
    assert "first bad entry is 5" in res.stdout
