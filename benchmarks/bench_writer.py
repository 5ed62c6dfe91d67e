"""CPU per submit inside the write lock: what bounds the API's write throughput.

Why this figure: every write goes through one writer at a time (SQLite's lock; the
group-commit writer of each server process, ``api/writer.py``), so the time a submit holds
the lock caps requests per second whatever the number of cores.  The HTTP benchmarks'
per-request CPU mixes this with the event loop, parsing and the decision (done before the
lock) and moves by more than the effect from run to run on a shared host; this measures
only the locked part, in-process.

Each round: a fresh SQLite store (WAL, ``synchronous=FULL``); police tracing requests
(needs review: three lifecycle steps) prepared outside the lock (``service.requests
.prepare``: parse, hash, decide, as the API does), then submitted in batches of ``--batch``
per transaction inside ``deferred_steps``, as the writer runs a batch; the thread CPU
from ``BEGIN IMMEDIATE`` to after the commit is divided by the batch size.  The first
five batches of a round are warm-up.  The result is the median over rounds of each
round's median batch.

    .venv/bin/python benchmarks/bench_writer.py            # -> results/writer.json

To compare two trees, run the same script against the other tree's sources:
``PYTHONPATH=/path/to/other/src .venv/bin/python benchmarks/bench_writer.py --out …``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safehaven.agreements import load_dir
from safehaven.domain.request import parse_request_obj
from safehaven.service import requests as svc
from safehaven.store.db import open_store, session_factory, transaction

EXAMPLE = Path(__file__).resolve().parents[1] / "src/safehaven/examples/police-serious-crime.json"
RESULTS = Path(__file__).resolve().parent / "results"
WARMUP = 5


def one_round(batches: int, batch: int) -> float:
    """Median in-lock CPU microseconds per submit over one fresh store's batches."""
    agreements = load_dir()
    template = json.loads(EXAMPLE.read_text("utf-8"))
    per_submit: list[float] = []
    n = 0
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
        engine = open_store(f"sqlite:///{tmp}/store.db")
        factory = session_factory(engine)
        for _ in range(batches):
            now = datetime.now(UTC)
            ready = []
            for _ in range(batch):
                n += 1
                request = parse_request_obj({**template, "request_id": f"bench-{n}"})
                ready.append((request, svc.prepare(request, agreements, received_at=now,
                                                   firewall_on=True)))
            started = time.thread_time()
            with transaction(factory) as session, svc.deferred_steps(session):
                for request, prepared in ready:
                    svc.submit(session, request, agreements, received_at=now,
                               prepared=prepared)
            per_submit.append((time.thread_time() - started) / batch * 1e6)
        engine.dispose()
    return statistics.median(per_submit[WARMUP:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=60, help="batches per round")
    ap.add_argument("--batch", type=int, default=32, help="submits per transaction")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "writer.json")
    args = ap.parse_args()
    if args.batches <= WARMUP:
        ap.error(f"--batches: more than the {WARMUP} warm-up batches")
    load_before = os.getloadavg()
    rounds = [round(one_round(args.batches, args.batch), 1) for _ in range(args.rounds)]
    result: dict[str, Any] = {
        "benchmark": "writer",
        "what": "thread CPU per submit inside the write transaction (BEGIN IMMEDIATE to "
                "after COMMIT), SQLite WAL synchronous=FULL, in-process",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "batch": args.batch,
        "submits_per_round": args.batches * args.batch,
        "rounds_us_per_submit": rounds,
        "median_us_per_submit": round(statistics.median(rounds), 1),
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(f"in-lock CPU per submit: median {result['median_us_per_submit']} us over "
          f"{args.rounds} rounds {rounds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
