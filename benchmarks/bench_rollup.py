"""What the report rollup costs the hot write path: ``service.requests.submit`` with and
without ``rollup.record_steps``, in-process, on SQLite (and PostgreSQL with ``--database-url``).

Why in-process: the HTTP benchmark's server CPU per request moves by ±0.5 ms from run to
run on a shared host, ten times the cost measured here, so an A/B through HTTP cannot see
it.  Here the same submits run in alternating rounds with the upsert on and off (the off
rounds replace ``rollup.record_steps`` with a no-op — a benchmark-only switch; nothing in
the service can turn it off), each round on a fresh store, and the CPU time spent inside
``record_steps`` is measured directly too.

Each submit is a police tracing request (needs review: three lifecycle steps, one rollup
row), in batches of 32 per transaction with a savepoint per submit, as the API's
group-commit writer runs them.

    .venv/bin/python benchmarks/bench_rollup.py          # SQLite -> results/rollup_cost.json
    .venv/bin/python benchmarks/bench_rollup.py --submits 2000 \
        --database-url postgresql://postgres@127.0.0.1/postgres \
        --out benchmarks/results/rollup_cost_pg.json
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
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from safehaven.agreements import load_dir
from safehaven.domain.request import parse_request
from safehaven.service import requests as svc
from safehaven.service import rollup
from safehaven.store.db import make_engine, session_factory, transaction, upgrade

EXAMPLE = Path(__file__).resolve().parents[1] / "src/safehaven/examples/police-serious-crime.json"
RESULTS = Path(__file__).resolve().parent / "results"


class Store:
    """A fresh migrated store for one round (a temporary SQLite file or PG database)."""

    def __init__(self, admin_url: str | None) -> None:
        self.admin_url = admin_url
        if admin_url is None:
            self.url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-rollup-')}/store.db"
            return
        self.name = f"safehaven_rollup_bench_{uuid.uuid4().hex[:8]}"
        with create_engine(admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = make_url(admin_url).set(database=self.name).render_as_string(
            hide_password=False)

    def drop(self) -> None:
        if self.admin_url is not None:
            with create_engine(self.admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


def one_round(admin_url: str | None, n: int, batch: int, with_rollup: bool) -> dict[str, Any]:
    store = Store(admin_url)
    engine = make_engine(store.url)
    try:
        upgrade(engine)
        factory = session_factory(engine)
        agreements = load_dir()
        example = parse_request(EXAMPLE.read_bytes())
        run = uuid.uuid4().hex[:8]
        requests = [example.model_copy(update={"request_id": f"{run}-{i}"}) for i in range(n)]
        inside = [0.0]
        real = rollup.record_steps

        def measured(*args: Any) -> None:
            t = time.process_time()
            real(*args)
            inside[0] += time.process_time() - t

        def off(*args: Any) -> None:
            return None

        rollup.record_steps = measured if with_rollup else off  # type: ignore[assignment]
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            for start in range(0, n, batch):
                with transaction(factory) as s:
                    for request in requests[start:start + batch]:
                        with s.begin_nested():
                            svc.submit(s, request, agreements, received_at=datetime.now(UTC))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            rollup.record_steps = real
    finally:
        engine.dispose()
        store.drop()
    return {"rollup": with_rollup, "cpu_ms_per_submit": round(cpu / n * 1000, 4),
            "wall_ms_per_submit": round(wall / n * 1000, 4),
            "record_steps_cpu_ms_per_submit": round(inside[0] / n * 1000, 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", help="PostgreSQL admin URL (default: SQLite files)")
    ap.add_argument("--submits", type=int, default=4000, help="per round")
    ap.add_argument("--batch", type=int, default=32, help="submits per transaction")
    ap.add_argument("--rounds", type=int, default=4, help="rounds with, and as many without")
    ap.add_argument("--out", type=Path, default=RESULTS / "rollup_cost.json")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "rollup_cost", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "database": "postgresql" if args.database_url else "sqlite",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    rounds = []
    for i in range(args.rounds * 2):
        with_rollup = i % 2 == (i // 2) % 2  # on/off, then off/on: neither always goes first
        rounds.append(one_round(args.database_url, args.submits, args.batch, with_rollup))
        print(f"  {rounds[-1]}", file=sys.stderr, flush=True)

    def median(key: str, on: bool) -> float:
        return round(float(statistics.median(r[key] for r in rounds if r["rollup"] is on)), 4)

    result.update({
        "submits_per_round": args.submits, "batch": args.batch, "rounds": rounds,
        "median_cpu_ms_per_submit": {"with_rollup": median("cpu_ms_per_submit", True),
                                     "without": median("cpu_ms_per_submit", False)},
        "median_record_steps_cpu_ms_per_submit": median("record_steps_cpu_ms_per_submit", True),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("database", "median_cpu_ms_per_submit",
                                             "median_record_steps_cpu_ms_per_submit")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
