"""Login lockout arithmetic at the edges (the API tests cover the flows)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from safehaven.service import accounts
from safehaven.store.accounts import AccountRow, LoginFailureRow
from safehaven.store.db import transaction


def test_a_huge_failure_count_locks_for_the_maximum_not_an_overflow(
    factory: sessionmaker[Session],
) -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    with transaction(factory) as s:
        row = accounts.create_account(s, "alice", "reviewer", "a long enough password", at=at)
        row.failed_logins = 10**6  # years of guessing from everywhere
        s.add(LoginFailureRow(account_id=row.id, client="203.0.113.9", failures=10**6,
                              last_at=at))
    with transaction(factory) as s:
        until = accounts.record_failed_login(s, row.id, at=at, client="203.0.113.9")
    assert until == at + accounts.MAX_LOCKOUT
    with transaction(factory) as s:
        stored = s.get(AccountRow, row.id)
        assert stored is not None and stored.failed_logins == 10**6 + 1


def test_stale_counts_are_forgotten(factory: sessionmaker[Session]) -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    with transaction(factory) as s:
        row = accounts.create_account(s, "alice", "reviewer", "a long enough password", at=at)
        s.add(LoginFailureRow(account_id=row.id, client="old", failures=4,
                              last_at=at - accounts.FAILURE_MEMORY * 2))
    with transaction(factory) as s:
        accounts.record_failed_login(s, row.id, at=at, client="new")
        clients = sorted(s.scalars(select(LoginFailureRow.client)))
    assert clients == ["new"]
