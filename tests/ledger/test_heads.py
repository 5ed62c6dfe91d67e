"""Signing keys and signed tree heads."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session, sessionmaker

from safehaven.ledger import heads, keys, log, merkle
from safehaven.ledger.heads import TreeHead, head_message, sign_head, verify_head
from safehaven.store.db import transaction


def test_key_is_created_once_owner_only_and_reused(workspace: Path) -> None:
    k1 = keys.load_or_create_signing_key()
    path = workspace / keys.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (workspace / keys.PUBLIC_KEY_FILE).read_bytes() == keys.public_pem(k1.public_key())
    k2 = keys.load_or_create_signing_key()
    assert keys.key_id(k1.public_key()) == keys.key_id(k2.public_key())
    assert [p.name for p in workspace.iterdir() if p.name.startswith(".ledger-key-")] == []


def test_key_readable_by_others_is_refused(workspace: Path) -> None:
    keys.load_or_create_signing_key()
    os.chmod(workspace / keys.KEY_FILE, 0o644)
    with pytest.raises(keys.LedgerKeyError, match="chmod 600"):
        keys.load_or_create_signing_key()


def test_key_location_can_be_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keys.KEY_ENV, str(tmp_path / "secret" / "ledger.key"))
    keys.load_or_create_signing_key()
    assert (tmp_path / "secret" / "ledger.key").exists()
    assert (tmp_path / "secret" / "ledger.pub").exists()


def test_signed_message_is_the_documented_text() -> None:
    assert head_message(3, bytes(32), 1700000000000) == (
        b"safehaven-ledger/v1\n3\n" + b"00" * 32 + b"\n1700000000000\n")


def test_heads_sign_the_committed_log_and_are_kept(
    factory: sessionmaker[Session], signing_key: Ed25519PrivateKey
) -> None:
    pub = signing_key.public_key()
    with transaction(factory) as s:
        empty = sign_head(s, signing_key, now_ms=1000)
    assert empty.size == 0 and empty.root == merkle.EMPTY_ROOT and verify_head(empty, pub)
    with transaction(factory) as s:
        log.append_many(s, [{"n": i} for i in range(5)])
        h5 = sign_head(s, signing_key, now_ms=500)  # clock went backwards
    assert h5.timestamp_ms == 1000  # ...but heads never do
    with transaction(factory) as s:
        assert sign_head(s, signing_key) == h5  # nothing appended: same head
        assert h5.root == log.root_at(s, 5)
        assert [h.size for h in heads.all_heads(s)] == [0, 5]
        assert heads.latest_head(s) == h5 and heads.head_at(s, 0) == empty
    assert verify_head(h5, pub)
    assert TreeHead.from_json(h5.to_json()) == h5


def test_forged_or_altered_heads_fail(signing_key: Ed25519PrivateKey) -> None:
    pub = signing_key.public_key()
    root = merkle.root([b"a", b"b"])
    good = TreeHead(2, root, 1, keys.key_id(pub), signing_key.sign(head_message(2, root, 1)))
    assert verify_head(good, pub)
    other = Ed25519PrivateKey.generate()
    assert not verify_head(TreeHead(2, root, 1, good.key_id,
                                    other.sign(head_message(2, root, 1))), pub)
    assert not verify_head(TreeHead(3, root, 1, good.key_id, good.signature), pub)
    assert not verify_head(TreeHead(2, root, 2, good.key_id, good.signature), pub)
    assert not verify_head(good, other.public_key())  # different key id


@pytest.mark.parametrize(("change", "field"), [
    ({"size": -1}, "size"),
    ({"root": "zz"}, "root"),
    ({"signature": "00"}, "signature"),
    ({"origin": "other-log"}, "origin"),
])
def test_head_json_errors_name_the_field(change: dict[str, object], field: str) -> None:
    doc = {"size": 1, "root": "00" * 32, "timestamp": 1, "key_id": "k", "signature": "00" * 64}
    with pytest.raises(ValueError, match=field):
        TreeHead.from_json({**doc, **change})
    with pytest.raises(ValueError, match="timestamp"):
        TreeHead.from_json({k: v for k, v in doc.items() if k != "timestamp"})
