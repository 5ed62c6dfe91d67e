"""Signed tree heads: the size and root of the log at a moment, under the controller's key.

What is signed is a short text, so anyone can rebuild it by hand from a published head and
check it with any Ed25519 tool (``docs/ledger.md``)::

    safehaven-ledger/v1
    <size>
    <root, lowercase hex>
    <timestamp, milliseconds since 1970-01-01 UTC>

Every head is kept (one per size): any two published heads can then be proved consistent,
so a log cannot show one history to oversight today and a trimmed one tomorrow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from safehaven.ledger import log, merkle
from safehaven.ledger.keys import key_id
from safehaven.store.models import LedgerHeadRow

ORIGIN = "safehaven-ledger/v1"
HEADS = cast(Table, LedgerHeadRow.__table__)


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        return head_message(self.size, self.root, self.timestamp_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": ORIGIN,
            "size": self.size,
            "root": self.root.hex(),
            "timestamp": self.timestamp_ms,
            "time": datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).isoformat(),
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, value: Any) -> TreeHead:
        """Parse a published head; raises ``ValueError`` naming the bad field."""
        if not isinstance(value, dict):
            raise ValueError("head: expected a JSON object")
        if value.get("origin", ORIGIN) != ORIGIN:
            raise ValueError(f"head.origin: expected {ORIGIN!r}")
        try:
            size, ts = value["size"], value["timestamp"]
            root, sig, kid = (bytes.fromhex(value["root"]), bytes.fromhex(value["signature"]),
                              str(value["key_id"]))
        except KeyError as exc:
            raise ValueError(f"head.{exc.args[0]}: missing") from None
        except (TypeError, ValueError):
            raise ValueError("head.root/signature: expected hex strings") from None
        if not isinstance(size, int) or not isinstance(ts, int) or size < 0:
            raise ValueError("head.size/timestamp: expected non-negative integers")
        if len(root) != merkle.HASH_SIZE or len(sig) != 64:
            raise ValueError("head.root/signature: wrong length")
        return cls(size=size, root=root, timestamp_ms=ts, key_id=kid, signature=sig)


def head_message(size: int, root: bytes, timestamp_ms: int) -> bytes:
    return f"{ORIGIN}\n{size}\n{root.hex()}\n{timestamp_ms}\n".encode("ascii")


def verify_head(head: TreeHead, public_key: Ed25519PublicKey) -> bool:
    if head.key_id != key_id(public_key):
        return False
    try:
        public_key.verify(head.signature, head.message())
    except InvalidSignature:
        return False
    return True


def _row_to_head(row: Any) -> TreeHead:
    return TreeHead(
        size=int(row.size),
        root=bytes(row.root),
        timestamp_ms=int(row.timestamp_ms),
        key_id=str(row.key_id),
        signature=bytes(row.signature),
    )


def latest_head(session: Session) -> TreeHead | None:
    row = session.execute(select(HEADS).order_by(HEADS.c.size.desc()).limit(1)).one_or_none()
    return None if row is None else _row_to_head(row)


def head_at(session: Session, size: int) -> TreeHead | None:
    row = session.execute(select(HEADS).where(HEADS.c.size == size)).one_or_none()
    return None if row is None else _row_to_head(row)


def all_heads(session: Session) -> list[TreeHead]:
    return [_row_to_head(r) for r in session.execute(select(HEADS).order_by(HEADS.c.size))]


def sign_head(
    session: Session, key: Ed25519PrivateKey, *, now_ms: int | None = None
) -> TreeHead:
    """Checkpoint the log as it is now; returns the existing head if nothing was appended.

    Holds the append lock while signing, so the head is exactly the committed prefix.
    Timestamps never go backwards even if the clock does: a verifier may rely on order.
    """
    size, root = log.current_root(session, lock=True)
    latest = latest_head(session)
    if latest is not None:
        if latest.size == size:
            return latest
        if latest.size > size:
            raise log.LedgerError(
                f"log has {size} entries but a head was signed at size {latest.size}"
            )
    ts = int(time.time() * 1000) if now_ms is None else now_ms
    if latest is not None:
        ts = max(ts, latest.timestamp_ms)
    head = TreeHead(
        size=size,
        root=root,
        timestamp_ms=ts,
        key_id=key_id(key.public_key()),
        signature=key.sign(head_message(size, root, ts)),
    )
    session.execute(
        insert(HEADS).values(
            size=head.size,
            root=head.root,
            timestamp_ms=head.timestamp_ms,
            key_id=head.key_id,
            signature=head.signature,
        )
    )
    return head
