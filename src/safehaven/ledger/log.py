"""The append-only log in the database: entries, complete-subtree hashes and the right edge.

An append runs inside the caller's transaction, so a lifecycle step and its entry commit or
vanish together.  It locks the single ``ledger_state`` row, which serialises appenders on
PostgreSQL (SQLite's ``BEGIN IMMEDIATE`` already does), so indexes are dense and a crash can
only lose an uncommitted tail, never leave a hole.

Each append writes its leaf and the few complete subtrees it closes (one on average) and
updates the stored right edge; nothing is rehashed.  Proofs read the O(log n) complete
subtrees they need (``merkle.complete_subtrees``) in two indexed queries.

A leaf is the canonical JSON ``{"event": {...}, "seq": n}``: carrying its own index means a
row moved to another position is detected as moved, not merely as "the root differs".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from safehaven.ledger import merkle
from safehaven.store.models import LedgerEntryRow, LedgerNodeRow, LedgerStateRow

ENTRIES = cast(Table, LedgerEntryRow.__table__)
NODES = cast(Table, LedgerNodeRow.__table__)
STATE = cast(Table, LedgerStateRow.__table__)
STATE_ID = 1
H = merkle.HASH_SIZE


class LedgerError(Exception):
    """The stored log cannot answer (missing node, bad size): run ``safehaven ledger verify``."""


# The same settings as ``domain.canonical.canonical_json``, built once: constructing an
# encoder per call is a fifth of the cost of an append (tests hold the two equal).
_encode_json = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def encode_leaf(event: Mapping[str, Any], seq: int) -> bytes:
    """``canonical_json({"event": event, "seq": seq})``, built without the wrapper dict."""
    return b'{"event":' + _encode_json(event).encode("utf-8") + b',"seq":%d}' % seq


def seq_suffix(seq: int) -> bytes:
    """How every canonical leaf ends ("seq" sorts after "event"); lets a verifier check the
    position of an entry without parsing it."""
    return b',"seq":%d}' % seq


class _SQL:
    """The log's statements in the driver's own parameter style.

    Every ledger statement goes straight to the DBAPI cursor of the session's connection
    (so it is inside the session's transaction): an append or a proof is a handful of
    indexed single-row operations, and composing, compiling and wrapping them through
    SQLAlchemy cost several times more than running them (a lifecycle step appends up to
    three entries).
    """

    def __init__(self, mark: str, *, for_update: bool) -> None:
        self.mark = mark
        self.read_state = "SELECT size, frontier FROM ledger_state WHERE id = 1"
        self.lock_state = self.read_state + (" FOR UPDATE" if for_update else "")
        self.update_state = "UPDATE ledger_state SET size = ?, frontier = ? WHERE id = 1"
        self.insert_entries = "INSERT INTO ledger_entries (idx, leaf_hash, event) VALUES (?, ?, ?)"
        self.insert_nodes = "INSERT INTO ledger_nodes (level, idx, hash) VALUES (?, ?, ?)"
        self.read_entry = "SELECT event, leaf_hash FROM ledger_entries WHERE idx = ?"
        for name in ("update_state", "insert_entries", "insert_nodes", "read_entry"):
            setattr(self, name, getattr(self, name).replace("?", mark))


_SQLITE = _SQL("?", for_update=False)  # SQLite: the engine's BEGIN IMMEDIATE is the lock
_OTHER = _SQL("%s", for_update=True)


def _cursor(session: Session) -> tuple[Any, _SQL]:
    conn = session.connection()
    sql = _SQLITE if conn.dialect.paramstyle == "qmark" else _OTHER
    return conn.connection.cursor(), sql


def _split_frontier(blob: bytes) -> list[bytes]:
    return [blob[i : i + H] for i in range(0, len(blob), H)]


def _state(session: Session, *, lock: bool) -> tuple[int, list[bytes]]:
    cursor, sql = _cursor(session)
    try:
        cursor.execute(sql.lock_state if lock else sql.read_state)
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is None:
        raise LedgerError("ledger_state row is missing (schema not migrated?)")
    size, frontier = int(row[0]), _split_frontier(bytes(row[1]))
    if len(frontier) != size.bit_count():
        raise LedgerError(f"stored right edge has {len(frontier)} hashes for size {size}")
    return size, frontier


def lock(session: Session) -> None:
    """Take the ledger's append lock now, for a transaction that will append later.

    Why: a transaction that takes another row lock (a volume-cap counter) before its first
    append would otherwise lock in the opposite order to one that has already appended,
    and two PostgreSQL writers could deadlock.  Taking this lock first keeps one order:
    ledger, then anything else.  (On SQLite ``BEGIN IMMEDIATE`` already holds the only
    lock, so this is a plain read.)
    """
    _state(session, lock=True)


def size(session: Session) -> int:
    return _state(session, lock=False)[0]


def current_root(session: Session, *, lock: bool = False) -> tuple[int, bytes]:
    """Size and root of the whole log, from the stored right edge (no tree walk)."""
    n, frontier = _state(session, lock=lock)
    return n, merkle.fold(frontier)


def append(session: Session, event: Mapping[str, Any]) -> int:
    """Append one event; returns its index.  Commits with the caller's transaction."""
    return append_many(session, [event]).start


#: ``session.info`` key: a callable run before every append in that session.  A caller that
#: holds back entries of its own (``service.requests.deferred_steps``) registers one to
#: append them first, so the log's order stays the order things happened in.
BEFORE_APPEND = "safehaven.ledger.before_append"


def append_many(session: Session, events: Iterable[Mapping[str, Any]]) -> range:
    """Append events in order under one lock; returns their indexes.

    The batch is the unit of throughput: one state update, two multi-row inserts.
    """
    before = session.info.get(BEFORE_APPEND)
    if before is not None:
        before(session)
    first, frontier = _state(session, lock=True)
    n = first
    sha = hashlib.sha256
    entry_rows: list[tuple[int, bytes, str]] = []
    node_rows: list[tuple[int, int, bytes]] = []
    encode, add_entry, add_node = _encode_json, entry_rows.append, node_rows.append
    for event in events:
        text = f'{{"event":{encode(event)},"seq":{n}}}'  # == encode_leaf(event, n)
        cur = sha(b"\x00" + text.encode("utf-8")).digest()
        add_entry((n, cur, text))
        level, i = 0, n
        while i & 1:  # each set low bit of n is a complete subtree this leaf now closes
            cur = sha(b"\x01" + frontier.pop() + cur).digest()
            level += 1
            i >>= 1
            add_node((level, i, cur))
        frontier.append(cur)
        n += 1
    if n == first:
        return range(first, first)
    cursor, sql = _cursor(session)
    try:
        cursor.executemany(sql.insert_entries, entry_rows)
        if node_rows:
            cursor.executemany(sql.insert_nodes, node_rows)
        cursor.execute(sql.update_state, (n, b"".join(frontier)))
    finally:
        cursor.close()
    return range(first, n)


# --- reading ------------------------------------------------------------------------------


def entry(session: Session, index: int) -> tuple[bytes, bytes]:
    """The leaf data and stored leaf hash at ``index``."""
    cursor, sql = _cursor(session)
    try:
        cursor.execute(sql.read_entry, (index,))
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is None:
        raise LedgerError(f"entry {index} does not exist")
    return str(row[0]).encode("utf-8"), bytes(row[1])


def subtree_hashes(session: Session, nodes: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
    """Hashes of complete subtrees, level 0 from the entries and the rest from the nodes.

    Plain driver SQL: two indexed queries whose text depends only on how many hashes are
    wanted.  (Building the same query as SQLAlchemy expressions costs more than running it,
    and a row-value ``IN`` makes SQLite scan the table.)
    """
    wanted = set(nodes)
    leaves = sorted(i for level, i in wanted if level == 0)
    upper = sorted((level, i) for level, i in wanted if level > 0)
    found: dict[merkle.Node, bytes] = {}
    cursor, sql = _cursor(session)
    m = sql.mark
    try:
        if leaves:
            cursor.execute(f"SELECT idx, leaf_hash FROM ledger_entries "  # noqa: S608
                           f"WHERE idx IN ({', '.join([m] * len(leaves))})", tuple(leaves))
            for idx, h in cursor.fetchall():
                found[(0, int(idx))] = bytes(h)
        if upper:
            cond = " OR ".join([f"(level = {m} AND idx = {m})"] * len(upper))
            cursor.execute(f"SELECT level, idx, hash FROM ledger_nodes WHERE {cond}",  # noqa: S608
                           tuple(x for pair in upper for x in pair))
            for lv, idx, h in cursor.fetchall():
                found[(int(lv), int(idx))] = bytes(h)
    finally:
        cursor.close()
    missing = wanted - found.keys()
    if missing:
        raise LedgerError(f"stored tree is missing subtree(s) {sorted(missing)[:3]}")
    return found


def range_hashes(session: Session, ranges: Sequence[merkle.Range]) -> list[bytes]:
    parts = [merkle.complete_subtrees(a, b) for a, b in ranges]
    found = subtree_hashes(session, (n for p in parts for n in p))
    return [merkle.fold([found[n] for n in p]) for p in parts]


def _check_size(session: Session, tree_size: int) -> None:
    current = size(session)
    if not 0 <= tree_size <= current:
        raise LedgerError(f"tree size {tree_size} is beyond the log's size {current}")


def root_at(session: Session, tree_size: int) -> bytes:
    _check_size(session, tree_size)
    return range_hashes(session, [(0, tree_size)])[0] if tree_size else merkle.EMPTY_ROOT


def inclusion_proof(session: Session, index: int, tree_size: int) -> list[bytes]:
    _check_size(session, tree_size)
    return range_hashes(session, merkle.inclusion_ranges(index, tree_size))


def consistency_proof(session: Session, old_size: int, new_size: int) -> list[bytes]:
    _check_size(session, new_size)
    return range_hashes(session, merkle.consistency_ranges(old_size, new_size))
