"""kill -9 an appending process at random moments; nothing acknowledged may be lost.

SQLite runs with WAL and ``synchronous=FULL``; after every kill the log must verify in full
(entries, stored subtrees, right edge, every head) and hold every acknowledged entry, and
the next process must be able to carry on appending.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safehaven.ledger import log
from safehaven.ledger.verify import verify_log
from safehaven.store.db import make_engine, session_factory, transaction, upgrade
from tests.ledger import crash_appender

TRIALS = 50


def _run_and_kill(url: str, trial: int, after: float) -> str:
    """Fork an appender, let it run ``after`` seconds past start-up, SIGKILL it; its output.

    A fork gives the child its own connections (it opens its own engine; the parent holds
    none across the fork) and a kill -9 that no handler, atexit or finally can soften.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(read_fd)
        try:
            with os.fdopen(write_fd, "w") as out:
                crash_appender.main(url, trial, out)
        finally:
            os._exit(1)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        assert pipe.readline().strip() == "ready"
        time.sleep(after)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        return pipe.read()


def test_kill_9_loses_no_acknowledged_append(
    workspace: Path, signing_key: Ed25519PrivateKey
) -> None:
    url = f"sqlite:///{workspace / 'crash.db'}"
    setup = make_engine(url)
    upgrade(setup)
    setup.dispose()  # no connection of the parent's may cross a fork
    rng = random.Random(6962)
    acked: list[tuple[int, int, int, int]] = []
    for trial in range(TRIALS):
        out = _run_and_kill(url, trial, rng.uniform(0.0, 0.25))
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
