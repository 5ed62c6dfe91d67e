"""The offline checks the fault suite relies on must themselves catch what they claim to.

A check that can never fail proves nothing about a crash: each test here breaks one
invariant on purpose, in a way every other check accepts, and expects it named.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from safehaven.agreements import load_dir
from safehaven.ledger import log as ledger_log
from safehaven.service import requests as svc
from safehaven.store.db import open_store, session_factory, transaction
from tests.builders import POLICE, body, req
from tests.faults.harness import check_invariants, make_workspace

AT = datetime(2017, 9, 2, 10, 0, tzinfo=UTC)


def test_a_clean_workspace_passes(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    engine = open_store(ws.url)
    with transaction(session_factory(engine)) as s:
        svc.submit(s, req(body(POLICE, request_id="i1")), load_dir(), received_at=AT)
    engine.dispose()
    assert check_invariants(ws) == []


def test_a_transition_the_ledger_does_not_show_is_named(tmp_path: Path) -> None:
    """An extra (valid, verifiable) ledger entry for a request: the log verifies, the
    lifecycle replays, and only the count of entries against transitions disagrees."""
    ws = make_workspace(tmp_path / "ws")
    engine = open_store(ws.url)
    with transaction(session_factory(engine)) as s:
        done = svc.submit(s, req(body(POLICE, request_id="i2")), load_dir(), received_at=AT)
        ledger_log.append(s, {"type": "request.transition", "request": done.public_id,
                              "event": "receive"})
    engine.dispose()
    problems = check_invariants(ws)
    assert len(problems) == 1 and done.public_id in problems[0]
    assert "ledger entries" in problems[0]
