"""kill -9 fault benchmark: many trials of the suite in ``tests/faults/``.

Each trial starts ``safehaven serve`` on a loopback port (a restart from the second trial
on), replays a sample of the previous trial's acknowledged requests (each must come back
200 with the same id), drives concurrent submits, bulk uploads, reviews, polls and head
signing, SIGKILLs the server at a random moment, and checks the database offline: every
acknowledged request exists exactly once, every acknowledged verdict is stored, nothing is
disclosed twice, every lifecycle replays legally, SQLite's integrity check passes and the
ledger verifies.  See ``tests/faults/harness.py``.

Run: ``.venv/bin/python benchmarks/faults.py --trials 100`` (about 15-20 minutes on a busy
2-core machine; most of it is server start-up).  Writes benchmarks/results/faults.json.
Exit status 1 if any trial found a problem.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.harness import TrialResult, run_trials

RESULTS = Path(__file__).resolve().parent / "results" / "faults.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--min-seconds", type=float, default=0.0,
                        help="earliest kill, seconds after the first acknowledgement")
    parser.add_argument("--max-seconds", type=float, default=2.5, help="latest kill")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.monotonic()
    cpu0 = time.process_time()

    def report(r: TrialResult) -> None:
        flag = "FAIL " + "; ".join(r.problems[:3]) if r.problems else "ok"
        print(f"trial {r.trial:4d} ({r.workers} worker{'s' if r.workers > 1 else ''}): "
              f"killed after {r.seconds_before_kill:.2f}s, "
              f"{r.acked_submits} acked requests, {r.acked_verdicts} acked verdicts, "
              f"{r.replayed} replayed: {flag}", flush=True)

    with tempfile.TemporaryDirectory(prefix="safehaven-faults-") as tmp:
        results = run_trials(Path(tmp) / "ws", args.trials, seed=args.seed,
                             min_s=args.min_seconds, max_s=args.max_seconds, report=report)
    failed = [r for r in results if r.problems]
    summary = {
        "benchmark": "faults (kill -9)",
        "command": f"benchmarks/faults.py --trials {args.trials} --seed {args.seed}",
        "trials": len(results),
        "trials_with_two_workers": sum(1 for r in results if r.workers == 2),
        "failed_trials": len(failed),
        "acked_requests": sum(r.acked_submits for r in results),
        "trials_with_no_ack": sum(1 for r in results if r.acked_submits == 0),
        "acked_verdicts": sum(r.acked_verdicts for r in results),
        "replayed_after_restart": sum(r.replayed for r in results),
        "wall_seconds": round(time.monotonic() - started, 1),
        "harness_cpu_seconds": round(time.process_time() - cpu0, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "failures": [asdict(r) for r in failed][:20],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
