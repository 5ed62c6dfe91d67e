"""kill -9 under concurrent submits, bulk uploads, reviews, polls and head signing.

After every kill: each acknowledged request exists exactly once with the id it was
acknowledged under, each acknowledged verdict is stored, no request was disclosed twice,
every request's transitions replay legally through the lifecycle table, SQLite's integrity
check passes and the ledger verifies (entries, tree, signed heads).  After every restart a
sample of the previous trial's acknowledged requests is resubmitted and must come back as
the same request (200, same id), never a second one.

CI runs ``SAFEHAVEN_FAULT_TRIALS`` trials (default 10); ``benchmarks/faults.py`` runs more.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.harness import run_trials

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("SAFEHAVEN_FAULT_TRIALS", "10"))


@pytest.mark.timeout(900)
def test_sigkill_trials_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    results = run_trials(tmp_path / "ws", TRIALS, seed=11, min_s=0.0, max_s=2.0)
    assert len(results) == TRIALS
    failures = {r.trial: r.problems for r in results if r.problems}
    assert failures == {}
    # The suite is only honest if the server really was busy when it died.
    assert all(r.acked_submits >= 1 for r in results)
    assert sum(r.acked_verdicts for r in results) >= 1
    assert {r.workers for r in results} == {1, 2}  # single process and two workers both
