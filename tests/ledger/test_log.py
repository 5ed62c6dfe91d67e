"""The stored log: incremental tree equals the RFC reference, proofs, atomicity, hooks.

Every test runs on SQLite and PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from safehaven.domain.canonical import canonical_json
from safehaven.ledger import log, merkle
from safehaven.service import requests as svc
from safehaven.service import settings as svc_settings
from safehaven.store.db import transaction
from safehaven.store.models import LedgerEntryRow, LedgerNodeRow, TransitionRow
from tests.builders import POLICE, req

AT = datetime(2017, 9, 2, 10, 0, tzinfo=UTC)


def _events(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"type": "test", "n": i, "who": "é"} for i in range(start, start + n)]


def _leaves(n: int) -> list[bytes]:
    return [canonical_json({"event": e, "seq": i}) for i, e in enumerate(_events(n))]


def test_incremental_tree_matches_reference_at_every_size(
    factory: sessionmaker[Session],
) -> None:
    batches = [1, 2, 1, 4, 9, 16, 3, 31, 1]  # uneven, so every frontier shape occurs
    done = 0
    for b in batches:
        with transaction(factory) as s:
            got = log.append_many(s, _events(b, done))
        assert got == range(done, done + b)
        done += b
        with transaction(factory) as s:
            assert log.current_root(s) == (done, merkle.root(_leaves(done)))
    leaves = _leaves(done)
    with transaction(factory) as s:
        for size in (1, 2, 5, 8, 37, done):
            assert log.root_at(s, size) == merkle.root(leaves[:size])
            for i in {0, size // 2, size - 1}:
                proof = log.inclusion_proof(s, i, size)
                assert proof == merkle.inclusion_proof(leaves[:size], i)
            for m in {0, 1, size // 3, size}:
                assert log.consistency_proof(s, m, size) == merkle.consistency_proof(
                    leaves[:size], m)
        # Every node stored once and none rehashed: complete subtrees only.
        nodes = s.scalar(select(func.count()).select_from(LedgerNodeRow))
        assert nodes == sum(done >> lv for lv in range(1, done.bit_length()))
        with pytest.raises(log.LedgerError, match="beyond"):
            log.inclusion_proof(s, 0, done + 1)


def test_single_appends_and_entries_are_canonical(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        assert log.append(s, {"b": 1, "a": [1, 2]}) == 0
        assert log.append(s, {"x": None}) == 1
    with transaction(factory) as s:
        data, h = log.entry(s, 0)
        assert data == b'{"event":{"a":[1,2],"b":1},"seq":0}'
        assert h == merkle.leaf_hash(data)
        assert log.append_many(s, []) == range(2, 2)


def test_rolled_back_transaction_leaves_no_entry(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        log.append(s, {"kept": True})
    with pytest.raises(RuntimeError), transaction(factory) as s:
        log.append_many(s, _events(5))
        raise RuntimeError("crash after append, before commit")
    with transaction(factory) as s:
        assert log.size(s) == 1
        assert s.scalar(select(func.count()).select_from(LedgerEntryRow)) == 1
        assert log.append(s, {"next": True}) == 1  # no hole


def test_database_refuses_to_rewrite_the_log(engine: Engine) -> None:
    factory = sessionmaker(engine)
    with transaction(factory) as s:
        log.append_many(s, _events(4))
    for stmt in ("UPDATE ledger_entries SET event = 'x' WHERE idx = 1",
                 "DELETE FROM ledger_entries WHERE idx = 3",
                 "DELETE FROM ledger_nodes"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(stmt))


def test_concurrent_appenders_get_dense_indexes(factory: sessionmaker[Session]) -> None:
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for j in range(10):
                with transaction(factory) as s:
                    log.append_many(s, [{"w": k, "j": j}, {"w": k, "j": j, "second": True}])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with transaction(factory) as s:
        idx = list(s.scalars(select(LedgerEntryRow.idx).order_by(LedgerEntryRow.idx)))
        assert idx == list(range(80))
        data = [s.scalar(select(LedgerEntryRow.event).where(LedgerEntryRow.idx == i))
                for i in range(80)]
        assert log.current_root(s)[1] == merkle.root([d.encode() for d in data if d])
        # A batch is contiguous: its two entries were appended under one lock.
        for i in range(0, 80, 2):
            assert '"second":true' in (data[i + 1] or "")


def test_every_lifecycle_step_appends_exactly_one_entry(
    factory: sessionmaker[Session], agreements: Any
) -> None:
    with transaction(factory) as s:
        svc_settings.set_firewall(s, False, actor="guardian", reason="Case of Jane Doe")
    with transaction(factory) as s:
        pid = svc.submit(s, req(POLICE), agreements, received_at=AT).public_id
    with transaction(factory) as s:
        svc.review(s, pid, reviewer="alice", verdict="approve", reason="serious: R42", at=AT)
        svc.record_match(s, pid, status="matched", score=0.998, record_id="R42", at=AT)
    before = _ledger_size(factory)
    with pytest.raises(svc.MinimisationError), transaction(factory) as s:  # refused use case
        svc.disclose(s, pid, released={"address": "1 Street", "gp_practice": "Y123"}, at=AT)
    assert _ledger_size(factory) == before
    with transaction(factory) as s:
        svc.disclose(s, pid, released={"address": "1 Street Lane"}, at=AT)
        svc.notify(s, pid, actor="safehaven", at=AT)
    with transaction(factory) as s:
        transitions = list(s.scalars(select(TransitionRow).order_by(TransitionRow.id)))
        entries = [log.entry(s, i)[0].decode() for i in range(log.size(s))]
    assert [t.to_state for t in transitions][-4:] == ["approved", "matched", "disclosed",
                                                     "notified"]
    assert len(entries) == 1 + len(transitions)
    assert '"type":"policy.change"' in entries[0]
    for t, e in zip(transitions, entries[1:], strict=True):
        assert f'"event":"{t.event}"' in e and f'"to":"{t.to_state}"' in e
        assert f'"request":"{pid}"' in e
    personal = [*_personal_values(POLICE), "Jane Doe", "1 Street Lane", "R42"]
    assert len(personal) > 3
    for value in personal:
        assert all(value not in e for e in entries), f"{value!r} is in the ledger"


def _ledger_size(factory: sessionmaker[Session]) -> int:
    with transaction(factory) as s:
        return log.size(s)


def _personal_values(body: dict[str, object]) -> list[str]:
    subject = body.get("subject")
    if not isinstance(subject, dict):
        return []
    return [str(v) for k, v in subject.items() if k in {"family", "given", "birthdate",
                                                      "address-postalcode"} and v]


def test_failed_use_case_leaves_neither_state_change_nor_entry(
    factory: sessionmaker[Session],
) -> None:
    with pytest.raises(ValueError), transaction(factory) as s:
        svc_settings.set_firewall(s, False, actor="x", reason=" ")
    with transaction(factory) as s:
        assert log.size(s) == 0 and svc_settings.firewall_enabled(s)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _json, max_size=6), st.integers(0, 2**40))
def test_leaf_encoding_is_canonical_json(event: dict[str, object], seq: int) -> None:
    assert log.encode_leaf(event, seq) == canonical_json({"event": event, "seq": seq})
    assert log.encode_leaf(event, seq).endswith(log.seq_suffix(seq))


def test_full_verification_passes_on_both_backends(
    engine: Engine, factory: sessionmaker[Session], signing_key: Ed25519PrivateKey
) -> None:
    from safehaven.ledger import heads
    from safehaven.ledger.verify import verify_log

    for n in (3, 1, 12):
        with transaction(factory) as s:
            log.append_many(s, _events(n))
            heads.sign_head(s, signing_key)
    with engine.connect() as conn:
        report = verify_log(conn, signing_key.public_key())
    assert report.ok, report.problems
    assert (report.size, report.heads) == (16, 3)
    with transaction(factory) as s:
        assert report.root == log.current_root(s)[1]
    with engine.connect() as conn:  # the wrong key: every head is reported
        report = verify_log(conn, Ed25519PrivateKey.generate().public_key())
    assert len([p for p in report.problems if "signature" in p]) == 3
