"""Child process for the crash test: append in a loop, say which appends were committed.

The test forks it (importing SQLAlchemy in 50 fresh interpreters would be most of the
test's time); ``python -m tests.ledger.crash_appender URL TRIAL`` runs it by hand.

A line ``ack FIRST LAST TRIAL K`` is printed (and flushed) only after the transaction holding
entries FIRST..LAST has committed: that is the acknowledgement the parent holds us to.
Every few batches it also signs a head, so heads are interrupted too.
"""

from __future__ import annotations

import random
import sys
from typing import TextIO

from safehaven.ledger import heads, log
from safehaven.ledger.keys import load_or_create_signing_key
from safehaven.store.db import open_store, session_factory, transaction


def main(url: str, trial: int, out: TextIO = sys.stdout) -> None:
    factory = session_factory(open_store(url, migrate=False))
    key = load_or_create_signing_key()
    rng = random.Random(trial)
    print("ready", file=out, flush=True)
    k = 0
    while True:
        n = rng.randint(1, 50)
        with transaction(factory) as s:
            got = log.append_many(s, [{"trial": trial, "k": k, "j": j} for j in range(n)])
            if k % 7 == 3:
                heads.sign_head(s, key)
        print(f"ack {got.start} {got.stop - 1} {trial} {k}", file=out, flush=True)
        k += 1


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
