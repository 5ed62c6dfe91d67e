"""Decisions per second, with explanations, in one process on one core.

Why this number matters: every request (API, bulk file, timeline replay) goes through
:func:`safehaven.domain.decision.decide`, and the engine promises to evaluate and explain
*every* rule rather than stop at the first failure.  This measures that promise's cost:
the full ``decide()`` producing every ``RuleResult`` and its reason text, plus
``Decision.to_dict()`` (what is stored and returned), over the bundled example requests —
approved, needs-review and refused cases, firewall on and off.  Parsing is excluded: it
happens once per request at intake, and its cost is pydantic's, not the engine's.

Run: ``.venv/bin/python benchmarks/bench_decide.py`` (writes benchmarks/results/decide.json).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic

from safehaven.agreements import load_dir
from safehaven.domain.decision import AgreementSet, decide
from safehaven.domain.request import TracingRequest, parse_request


def example_files() -> list[Path]:
    """The bundled example requests (package data, one per turning point of the seeds)."""
    return sorted(Path(str(resources.files("safehaven") / "examples")).glob("*.json"))


TARGET_PER_SECOND = 20_000
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "decide.json"


@dataclass(frozen=True)
class Case:
    name: str
    request: TracingRequest
    received_on: date
    firewall_on: bool
    cap_usage: int


def build_cases(agreements: AgreementSet) -> list[Case]:
    """Every bundled example with the firewall on and off, received a few days after it
    was made; the DfE child trace also once at its monthly cap (the cap rule's refusal)."""
    cases = []
    for path in example_files():
        request = parse_request(path.read_bytes())
        received = request.made_on + timedelta(days=3)
        for on in (True, False):
            cases.append(Case(f"{path.stem}/fw-{'on' if on else 'off'}", request, received, on, 0))
            if path.stem == "dfe-2016-child-trace":
                agreement = agreements.get(request.agreement)
                assert agreement is not None and agreement.volume_cap is not None
                cases.append(Case(f"{path.stem}/fw-{'on' if on else 'off'}/at-cap", request,
                                  received, on, agreement.volume_cap.per_month))
    return cases


def run_once(cases: list[Case], agreements: AgreementSet, iterations: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for ``iterations`` decisions, cycling through ``cases``.

    CPU time is recorded beside wall-clock time because on a shared host the process is
    descheduled for part of the run; CPU seconds show what the engine itself costs.
    """
    n = len(cases)
    rounds, rest = divmod(iterations, n)
    schedule = cases * rounds + cases[:rest]
    cpu_start = time.process_time()
    start = time.perf_counter()
    for c in schedule:
        decide(c.request, agreements, received_on=c.received_on, firewall_on=c.firewall_on,
               cap_usage=c.cap_usage).to_dict()
    return time.perf_counter() - start, time.process_time() - cpu_start


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _pin_to_one_core() -> int | None:
    """Pin to one CPU so the figure is per core, not whatever the scheduler spreads."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=250_000,
                        help="decisions per repeat (default 250,000)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="JSON results file ('-' to skip writing)")
    args = parser.parse_args(argv)

    cpu = _pin_to_one_core()
    agreements = load_dir()
    cases = build_cases(agreements)
    mix = Counter(
        decide(c.request, agreements, received_on=c.received_on, firewall_on=c.firewall_on,
               cap_usage=c.cap_usage).outcome.value
        for c in cases
    )
    run_once(cases, agreements, min(args.iterations, 20_000))  # warm-up

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    timings = []
    cpu_timings = []
    for i in range(args.repeats):
        gc.collect()
        seconds, cpu_seconds = run_once(cases, agreements, args.iterations)
        timings.append(seconds)
        cpu_timings.append(cpu_seconds)
        print(f"repeat {i + 1}/{args.repeats}: {args.iterations / seconds:,.0f} decisions/s "
              f"({args.iterations / cpu_seconds:,.0f} per CPU-second)", file=sys.stderr)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    best = min(timings)
    median = statistics.median(timings)
    rows = [("best", best), ("median", median), ("worst", max(timings))]
    print(f"\n{'':8} {'decisions/s':>12} {'µs/decision':>12}")
    for label, seconds in rows:
        print(f"{label:8} {args.iterations / seconds:>12,.0f} "
              f"{seconds / args.iterations * 1e6:>12.2f}")
    best_cpu = min(cpu_timings)
    print(f"{'CPU best':8} {args.iterations / best_cpu:>12,.0f} "
          f"{best_cpu / args.iterations * 1e6:>12.2f}   (per CPU-second)")
    if load_before is not None and load_after is not None:
        print(f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
              f"on {os.cpu_count()} CPUs")
    print(f"\n{len(cases)} cases ({dict(sorted(mix.items()))}), {args.iterations:,} decisions "
          f"x {args.repeats} repeats, Python {platform.python_version()}, {_cpu_model()}"
          + (f", pinned to CPU {cpu}" if cpu is not None else ""))
    met = args.iterations / best >= TARGET_PER_SECOND
    print(f"target {TARGET_PER_SECOND:,}/s: {'met' if met else 'MISSED'}")

    result: dict[str, Any] = {
        "benchmark": "decide",
        "what": "decide() with every RuleResult + Decision.to_dict(), in-process, one core",
        "decisions_per_second": {
            "best": round(args.iterations / best),
            "median": round(args.iterations / median),
            "worst": round(args.iterations / max(timings)),
        },
        "microseconds_per_decision": {
            "best": round(best / args.iterations * 1e6, 3),
            "median": round(median / args.iterations * 1e6, 3),
        },
        "decisions_per_cpu_second": {
            "best": round(args.iterations / best_cpu),
            "median": round(args.iterations / statistics.median(cpu_timings)),
        },
        "load_average_1min": {
            "before": round(load_before[0], 2) if load_before else None,
            "after": round(load_after[0], 2) if load_after else None,
        },
        "target_decisions_per_second": TARGET_PER_SECOND,
        "target_met": met,
        "iterations": args.iterations,
        "repeats": args.repeats,
        "cases": [c.name for c in cases],
        "outcome_mix": dict(sorted(mix.items())),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "pydantic": pydantic.VERSION,
        "machine": {
            "cpu": _cpu_model(),
            "cpus_available": os.cpu_count(),
            "pinned_cpu": cpu,
            "platform": platform.platform(),
            "arch": platform.machine(),
        },
        "timestamp": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    if str(args.output) != "-":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
