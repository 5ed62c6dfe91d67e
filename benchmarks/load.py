"""Mixed-traffic load test of ``safehaven serve`` on SQLite, loopback only, bounded.

Why mixed: agencies submit and poll, reviewers read the queue and decide, agencies upload
bulk files, overseers pull statistics, all at once, and the write lock is shared by all of
them.  A submit-only figure (``bench_api.py``) says little about a reviewer's wait.

Closed loop: ``--workers`` client threads, each picking an operation by weight (submit 40,
poll 30, review 10, report 10, bulk 5 (20 rows), list 5) and paced so the total offered
rate does not exceed ``--rate``.  Runs for ``--seconds`` (capped at 900) or ``--max-ops``,
whichever is first; only 127.0.0.1 is ever targeted.  The server's RSS is sampled every
second so a soak run (``--seconds 600``) shows whether memory grows without bound.  The
per-agency rate limit is lifted for the run (it would otherwise be what is measured).

Run: ``.venv/bin/python benchmarks/load.py --seconds 60`` (writes
benchmarks/results/load.json; ``--out`` to write elsewhere, e.g. the soak run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.harness import (
    PASSWORD,
    POLICE,
    make_workspace,
    sign_head,
    start_server,
)

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
WEIGHTS = {"submit": 40, "poll": 30, "review": 10, "report": 10, "bulk": 5, "list": 5}
TARGET_RPS = 500


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = {k: [] for k in WEIGHTS}
        self.status: dict[str, dict[int, int]] = {k: {} for k in WEIGHTS}
        self.transport_errors = 0

    def add(self, op: str, seconds: float, status: int) -> None:
        with self.lock:
            self.lat[op].append(seconds)
            self.status[op][status] = self.status[op].get(status, 0) + 1


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 1)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker(n: int, base: str, token: str, stats: Stats, stop: threading.Event,
           pace: float, ids: list[str], max_ops: int, done: list[int]) -> None:
    rng = random.Random(n)
    ops, weights = zip(*WEIGHTS.items(), strict=True)
    agency = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                          timeout=60)
    person = httpx.Client(base_url=base, timeout=60)
    role = "reviewer" if n % 2 == 0 else "overseer"
    user = f"reviewer{n % 3}" if role == "reviewer" else "overseer"
    csrf = person.post("/v1/session", json={"username": user,
                                            "password": PASSWORD}).json()["csrf_token"]
    seq = 0
    next_at = time.monotonic()
    while not stop.is_set() and done[0] < max_ops:
        next_at += pace
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        op = rng.choices(ops, weights)[0]
        if op == "review" and role != "reviewer":
            op = "report"
        if op == "report" and role != "overseer":
            op = "list"
        seq += 1
        t0 = time.perf_counter()
        try:
            if op == "submit":
                r = agency.post("/v1/requests", json={**POLICE, "request_id": f"w{n}-{seq}"})
                if r.status_code == 201:
                    ids.append(r.json()["id"])
            elif op == "poll":
                rid = rng.choice(ids) if ids else "none"
                r = agency.get(f"/v1/requests/{rid}")
            elif op == "list":
                r = agency.get("/v1/requests?limit=20")
            elif op == "report":
                r = person.get("/v1/oversight/statistics")
            elif op == "bulk":
                body = "".join(json.dumps({**POLICE, "request_id": f"w{n}-{seq}-{i}"}) + "\n"
                               for i in range(20))
                r = agency.post("/v1/requests/bulk", content=body,
                                headers={"Content-Type": "application/x-ndjson"})
            else:  # review: take the oldest not yet reviewed by me
                q = person.get("/v1/review/queue?limit=5")
                todo = [x["id"] for x in q.json().get("requests", [])
                        if not x["reviewed_by_me"]] if q.status_code == 200 else []
                r = q
                if todo:
                    r = person.post(f"/v1/review/requests/{todo[0]}/verdict",
                                    json={"verdict": "approve", "reason": "load test"},
                                    headers={"X-CSRF-Token": csrf})
        except httpx.TransportError:
            with stats.lock:
                stats.transport_errors += 1
            continue
        stats.add(op, time.perf_counter() - t0, r.status_code)
        with stats.lock:
            done[0] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=TARGET_RPS, help="offered ops/s cap")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--max-ops", type=int, default=600_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    seconds = min(args.seconds, 900.0)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="safehaven-load-") as tmp:
        ws = make_workspace(Path(tmp) / "ws")
        sign_head(ws)
        server = start_server(ws, extra_env={"SAFEHAVEN_AGENCY_RATE": "1e9",
                                             "SAFEHAVEN_AGENCY_BURST": "1e9"})
        stats, stop, ids, done = Stats(), threading.Event(), [], [0]
        pace = args.workers / args.rate
        threads = [threading.Thread(target=worker, daemon=True, args=(
            n, server.base, ws.token, stats, stop, pace, ids, args.max_ops, done))
            for n in range(args.workers)]
        rss: list[tuple[float, int]] = []
        cpu0 = _cpu(server.proc.pid)
        started = time.monotonic()
        for t in threads:
            t.start()
        while time.monotonic() - started < seconds and done[0] < args.max_ops:
            time.sleep(1.0)
            rss.append((round(time.monotonic() - started, 1), _rss_kib(server.proc.pid)))
        stop.set()
        for t in threads:
            t.join(timeout=120)
        elapsed = time.monotonic() - started
        server_cpu = _cpu(server.proc.pid) - cpu0
        server.kill()
    all_lat = [x for xs in stats.lat.values() for x in xs]
    total = len(all_lat)
    five = sum(n for st in stats.status.values() for code, n in st.items() if code >= 500)
    errors = sum(n for st in stats.status.values() for code, n in st.items() if code >= 400)
    third = max(1, len(rss) // 3)
    summary: dict[str, Any] = {
        "benchmark": "mixed load on safehaven serve (SQLite WAL, synchronous=FULL)",
        "command": f"benchmarks/load.py --seconds {seconds:g} --rate {args.rate:g} "
                   f"--workers {args.workers}",
        "seconds": round(elapsed, 1),
        "operations": total,
        "ops_per_second": round(total / elapsed, 1),
        "p50_ms": _pct(all_lat, 0.50), "p99_ms": _pct(all_lat, 0.99),
        "max_ms": _pct(all_lat, 1.0),
        "http_5xx": five, "http_4xx_or_5xx": errors,
        "transport_errors": stats.transport_errors,
        "by_operation": {op: {"count": len(xs), "p50_ms": _pct(xs, 0.5),
                              "p99_ms": _pct(xs, 0.99), "max_ms": _pct(xs, 1.0),
                              "status": stats.status[op]}
                         for op, xs in stats.lat.items()},
        "server_rss_kib": {"first": rss[0][1] if rss else 0,
                           "mean_first_third": _mean([r for _, r in rss[:third]]),
                           "mean_last_third": _mean([r for _, r in rss[-third:]]),
                           "max": max((r for _, r in rss), default=0),
                           "samples": rss if seconds > 120 else rss[::5]},
        "server_cpu_seconds": round(server_cpu, 1),
        "target": {"ops_per_second": TARGET_RPS, "http_5xx": 0},
        "meets_target": total / elapsed >= TARGET_RPS and five == 0,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "server_rss_kib"}, indent=2))
    print("server RSS KiB:", {k: v for k, v in summary["server_rss_kib"].items()
                              if k != "samples"})
    return 0 if five == 0 else 1


def _mean(xs: list[int]) -> int:
    return int(sum(xs) / len(xs)) if xs else 0


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    raise SystemExit(main())
