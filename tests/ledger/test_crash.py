"""kill -9 an appending process at random moments; nothing acknowledged may be lost.

SQLite runs with WAL and ``synchronous=FULL``; after every kill the log must verify in full
(entries, stored subtrees, right edge, every head) and hold every acknowledged entry, and
the next process must be able to carry on appending.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safehaven.ledger import log
from safehaven.ledger.verify import verify_log
from safehaven.store.db import make_engine, session_factory, transaction, upgrade

TRIALS = 50
ROOT = Path(__file__).resolve().parents[2]


def test_kill_9_loses_no_acknowledged_append(
    workspace: Path, signing_key: Ed25519PrivateKey
) -> None:
    url = f"sqlite:///{workspace / 'crash.db'}"
    upgrade(make_engine(url))
    rng = random.Random(6962)
    acked: list[tuple[int, int, int, int]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for trial in range(TRIALS):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.crash_appender", url, str(trial)],
            stdout=subprocess.PIPE, cwd=ROOT, env=env, text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        for line in out.splitlines():  # a torn last line was never an acknowledgement
            parts = line.split()
            if len(parts) == 5 and parts[0] == "ack":
                acked.append((int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4])))

        engine = make_engine(url)  # "restart": a fresh process view, WAL recovery
        with engine.connect() as conn:
            report = verify_log(conn, signing_key.public_key())
        assert report.ok, (trial, report.problems)
        with transaction(session_factory(engine)) as s:
            for first, last, t, k in acked[-20:] if trial else acked:
                for idx in (first, last):
                    data, _ = log.entry(s, idx)
                    assert f'"k":{k}' in data.decode() and f'"trial":{t}' in data.decode()
            assert log.size(s) >= (acked[-1][1] + 1 if acked else 0)
        engine.dispose()
    assert len(acked) > TRIALS  # the kills did land mid-run, after real work
    # All acknowledged entries, from every trial, are still there at the end.
    engine = make_engine(url)
    with transaction(session_factory(engine)) as s:
        for _first, last, t, k in acked:
            data, _ = log.entry(s, last)
            assert f'"k":{k}' in data.decode() and f'"trial":{t}' in data.decode()
    engine.dispose()
