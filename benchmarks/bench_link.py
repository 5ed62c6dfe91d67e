"""Batch linkage: 100,000 requests against a 1,000,000-person register with Splink (DuckDB).

    .venv/bin/python benchmarks/bench_link.py [--people 1000000 --requests 100000]

Uses the register and model from ``bench_trace.py``'s work directory (creating them if
needed), times the same path as ``safehaven link`` (strict parse of the JSON-lines file,
Splink blocking + scoring, unique-match rule, CSV out) and scores it against the ground
truth.  Writes ``benchmarks/results/link_<people>x<requests>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from safehaven.matching.batch import link, read_requests, requests_frame
from safehaven.matching.model import load_model, save_model, train, training_sample
from safehaven.matching.person import EM_BLOCKING, PERSON_SPEC
from safehaven.matching.register import register_table
from safehaven.matching.synth import synth_register, write_register, write_requests

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/safehaven-bench"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.workdir.mkdir(parents=True, exist_ok=True)
    reg_path = args.workdir / f"register_{args.people}.parquet"
    model_path = args.workdir / f"model_{args.people}.json"
    req_path = args.workdir / f"link_{args.people}x{args.requests}.requests.jsonl"
    truth_path = args.workdir / f"link_{args.people}x{args.requests}.truth.csv"
    if not reg_path.exists():
        write_register(synth_register(args.people, seed=args.seed), reg_path)
    cols = ["record_id", *PERSON_SPEC.base]
    if not model_path.exists():
        reg = pq.read_table(reg_path, columns=cols).to_pandas()
        save_model(train(PERSON_SPEC, reg, training_sample(reg, 20_000, args.seed),
                         em_blocking=EM_BLOCKING, seed=args.seed), model_path)
    if not req_path.exists():
        reg = pq.read_table(reg_path, columns=cols).to_pandas()
        write_requests(reg, args.requests, req_path, truth_path, seed=args.seed + 100)

    out_path = args.workdir / "link_out.csv"
    cpu0 = time.process_time()
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    requests = read_requests(req_path)
    t1 = time.perf_counter()
    register = register_table(reg_path, columns=cols)
    t2 = time.perf_counter()
    result = link(PERSON_SPEC, load_model(model_path), register, requests_frame(requests))
    t3 = time.perf_counter()
    result.to_csv(out_path, index=False)
    t4 = time.perf_counter()
    cpu = time.process_time() - cpu0

    truth = pd.read_csv(truth_path, dtype=str, keep_default_na=False).set_index("request_id")
    result["truth"] = truth.loc[result["request_id"], "record_id"].to_numpy()
    present = result["truth"] != ""
    matched = result["status"] == "matched"
    correct = matched & (result["record_id"] == result["truth"])
    figures = {
        "benchmark": "link",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "people": args.people,
        "requests": len(result),
        "seconds_total": round(t4 - t0, 2),
        "seconds_parse_requests": round(t1 - t0, 2),
        "seconds_register_table": round(t2 - t1, 2),
        "seconds_splink_link": round(t3 - t2, 2),
        "seconds_write_csv": round(t4 - t3, 2),
        "process_cpu_seconds": round(cpu, 2),
        "load_average_1m_before_after": [load0, os.getloadavg()[0]],
        "cpus": os.cpu_count(),
        "status": result["status"].value_counts().to_dict(),
        "precision": float(correct.sum() / max(matched.sum(), 1)),
        "recall": float(correct.sum() / max(present.sum(), 1)),
    }
    print(json.dumps(figures, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"link_{args.people}x{args.requests}.json").write_text(
        json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
