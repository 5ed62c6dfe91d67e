"""Online tracing at scale: latency, memory, accuracy, and Splink one-at-a-time beside it.

    .venv/bin/python benchmarks/bench_trace.py --people 1000000
    .venv/bin/python benchmarks/bench_trace.py --people 10000000 --splink-sample 30

Generates (or reuses, under --workdir) a synthetic register and requests with ground
truth, trains the model with Splink, builds the online index, traces every request, and
then runs a sample of the same requests through Splink's ``predict_between`` with a
one-row left table.  Writes ``benchmarks/results/trace_<people>.json``.

    .venv/bin/python benchmarks/bench_trace.py --backend postgres --people 1000000 \
        --database-url postgresql://postgres@127.0.0.1:5432/safehaven_trace_bench

``--backend postgres`` builds the PostgreSQL candidate index (``pg_index.build_index``,
timed per step, with the build session's server CPU) and then starts two fresh worker
processes, one per backend, each loading the matcher exactly as an API worker does
(``online.load_online``, after importing the API app) and tracing every request: their
RSS, p50/p99/max latency, client CPU per trace and, for PostgreSQL, the server backends'
CPU per trace.  Both workers' outcomes are compared request by request (status, record id,
score within 1e-9), and precision/recall are computed from the PostgreSQL worker's.
Relation sizes come from ``pg_index.index_size``.  Writes
``benchmarks/results/trace_pg_<people>.json``.  ``--model`` reuses a trained model
(``--prior`` then sets its prior, as ``register train`` would for that register size).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from safehaven.matching.model import (
    load_model,
    new_linker,
    save_model,
    splink_frame,
    splink_table,
    subjects_to_frame,
    train,
    training_sample,
)
from safehaven.matching.online import RegisterMatcher
from safehaven.matching.person import EM_BLOCKING, PERSON_SPEC
from safehaven.matching.synth import synth_register, write_register, write_requests

RESULTS = Path(__file__).parent / "results"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def ensure_data(workdir: Path, people: int, requests: int, seed: int,
                request_seed: int) -> tuple[Path, Path, Path]:
    reg = workdir / f"register_{people}.parquet"
    req = workdir / f"register_{people}.requests_s{request_seed}.jsonl"
    truth = workdir / f"register_{people}.truth_s{request_seed}.csv"
    if not reg.exists():
        t = time.perf_counter()
        df = synth_register(people, seed=seed)
        write_register(df, reg)
        print(f"synthesised {people:,} people in {time.perf_counter() - t:.1f}s")
    if not req.exists() or sum(1 for _ in req.open()) < requests:
        df = pq.read_table(reg, columns=["record_id", *PERSON_SPEC.base]).to_pandas()
        write_requests(df, requests, req, truth, seed=request_seed)
        del df
    return reg, req, truth


def accuracy_of(outcomes: list[tuple[str, str, str | None, float]],
                truth_path: Path) -> dict[str, Any]:
    """Precision and recall of (request_id, status, record_id, score) against the truth."""
    truth = pd.read_csv(truth_path, dtype=str, keep_default_na=False).set_index("request_id")
    df = pd.DataFrame(outcomes, columns=["request_id", "status", "record_id", "score"])
    df["truth"] = truth.loc[df["request_id"], "record_id"].to_numpy()
    present = df["truth"] != ""
    matched = df["status"] == "matched"
    correct = matched & (df["record_id"] == df["truth"])
    return {
        "requests": len(df),
        "present": int(present.sum()),
        "absent": int((~present).sum()),
        "matched": int(matched.sum()),
        "ambiguous": int((df["status"] == "ambiguous").sum()),
        "no_match": int((df["status"] == "no_match").sum()),
        "false_matches": int((matched & ~correct).sum()),
        "absent_matched": int((matched & ~present).sum()),
        "precision": float(correct.sum() / max(matched.sum(), 1)),
        "recall": float(correct.sum() / max(present.sum(), 1)),
    }


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (a PostgreSQL backend on this host), or None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids(url: str, application_name: str) -> list[int]:
    import psycopg

    from safehaven.matching.pg_index import conninfo

    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                            "AND datname = current_database()", (application_name,)).fetchall()
    return [int(r[0]) for r in rows]


def server_settings(url: str) -> dict[str, str]:
    import psycopg

    from safehaven.matching.pg_index import conninfo

    names = ("server_version", "shared_buffers", "effective_cache_size", "work_mem",
             "max_parallel_maintenance_workers", "max_wal_size", "random_page_cost", "jit")
    out: dict[str, str] = {}
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        for name in names:
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            out[name] = str(row[0]) if row else ""
    return out


def status_mib() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process, MiB."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1]) / 1024
    return out


def worker(args: argparse.Namespace) -> int:
    """One API-like process: load the matcher as a worker does, trace every request."""
    import safehaven.api.app  # noqa: F401  (what an API worker has imported)
    from safehaven.matching.online import load_online
    from safehaven.matching.pg_index import URL_ENV

    if args.worker == "postgres":
        os.environ[URL_ENV] = args.database_url
        os.environ["SAFEHAVEN_REGISTER_INDEX_SCHEMA"] = args.schema
    else:
        os.environ.pop(URL_ENV, None)
    reg_path = args.workdir / f"register_{args.people}.parquet"
    req_path = args.workdir / f"register_{args.people}.requests_s{args.request_seed}.jsonl"
    requests = [json.loads(line) for line in req_path.open()][: args.requests]
    gc.collect()
    rss_start = status_mib()["VmRSS"]
    t, cpu0 = time.perf_counter(), time.process_time()
    matcher = load_online(reg_path, Path(args.model_file))
    load_seconds, load_cpu = time.perf_counter() - t, time.process_time() - cpu0
    gc.collect()
    gc.freeze()
    rss_loaded = status_mib()["VmRSS"]
    on_pg = args.worker == "postgres"
    pids = backend_pids(args.database_url, "safehaven-register-index") if on_pg else []
    server0 = {p: proc_cpu_seconds(p) for p in pids}
    load_before = os.getloadavg()[0]
    latencies: list[float] = []
    cpu: list[float] = []
    outcomes: list[tuple[str, str, str | None, float]] = []
    for r in requests:
        start, start_cpu = time.perf_counter(), time.thread_time()
        result = matcher.match(r["subject"])
        latencies.append((time.perf_counter() - start) * 1000)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        outcomes.append((r["request_id"], result.status, result.record_id, result.score))
    load_after = os.getloadavg()[0]
    pids_after = backend_pids(args.database_url, "safehaven-register-index") if on_pg else []
    server_cpu = 0.0
    for p in set(pids) | set(pids_after):
        before = server0.get(p) or 0.0
        after = proc_cpu_seconds(p)
        server_cpu += (after if after is not None else before) - before
    mem = status_mib()
    ms = latencies
    doc = {
        "backend": args.worker, "load_seconds": round(load_seconds, 2),
        "load_cpu_seconds": round(load_cpu, 2),
        "rss_mib_before_load": round(rss_start), "rss_mib_after_load": round(rss_loaded),
        "rss_mib_after_traces": round(mem["VmRSS"]), "peak_rss_mib": round(mem["VmHWM"]),
        "traces": len(ms), "p50_ms": round(pct(ms, 50), 3), "p90_ms": round(pct(ms, 90), 3),
        "p99_ms": round(pct(ms, 99), 3), "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.mean(ms), 3),
        "first_1000_p99_ms": round(pct(ms[:1000], 99), 3),
        "after_1000_p99_ms": round(pct(ms[1000:], 99), 3) if len(ms) > 1000 else None,
        "client_cpu_p50_ms": round(pct(cpu, 50), 3),
        "client_cpu_p99_ms": round(pct(cpu, 99), 3),
        "server_cpu_ms_per_trace": round(server_cpu * 1000 / len(ms), 3) if on_pg else None,
        "server_backends": len(set(pids) | set(pids_after)),
        "load_average_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "outcomes": outcomes,
    }
    Path(args.worker_out).write_text(json.dumps(doc))
    return 0


def disk_report(url: str, schema: str, people: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-relation sizes of the index, and per million people: on disk, and the part a
    trace reads (people heap + key, the block tables' covering btrees).  The block tables'
    heaps are never read by a trace (index-only scans on all-visible pages), and the
    releasable table is read once per unique match."""
    import psycopg

    from safehaven.matching.pg_index import conninfo

    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_relation_size(c.oid), pg_indexes_size(c.oid), "
            "pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,)).fetchall()
    mib, per_m = 2**20, 1_000_000 / people
    relations = {str(r[0]): {"heap_mib": round(r[1] / mib, 1), "indexes_mib": round(r[2] / mib, 1),
                             "total_mib": round(r[3] / mib, 1)} for r in rows}
    total = sum(int(r[3]) for r in rows)
    hot = sum(int(r[3]) if r[0] in ("people", "large_blocks", "meta") else
              int(r[2]) if str(r[0]).startswith("block_") else 0 for r in rows)
    return relations, {
        "total_mib": round(total / mib, 1), "mib_per_million": round(total / mib * per_m, 1),
        "trace_reads_mib_per_million": round(hot / mib * per_m, 1),
        "releasable_mib_per_million": round(
            relations.get("releasable", {}).get("total_mib", 0.0) * per_m, 1),
        "note": "trace_reads = people (heap + primary key) and the block tables' covering "
                "btrees: what must stay in cache for traces to avoid disk reads"}


def candidate_counts(url: str, schema: str, req_path: Path, count: int) -> dict[str, Any]:
    """How many register rows a trace scores (the work per trace grows with this, and
    this grows with the register until blocks reach the cap): from the PostgreSQL index."""
    from safehaven.matching.index import prepare_values
    from safehaven.matching.online import subject_values
    from safehaven.matching.pg_index import PgCandidateIndex
    from safehaven.matching.scorer import Policy

    index = PgCandidateIndex(url, PERSON_SPEC, PERSON_SPEC.base, schema)
    cap = Policy().block_cap
    try:
        sizes = [len(index.candidates(prepare_values(PERSON_SPEC, subject_values(
            json.loads(line)["subject"])), cap=cap).rows)
            for _, line in zip(range(count), req_path.open(), strict=False)]
    finally:
        index.close()
    return {"requests": len(sizes), "p50": pct(sizes, 50), "p90": pct(sizes, 90),
            "p99": pct(sizes, 99), "max": max(sizes), "mean": round(statistics.mean(sizes), 1)}


def run_postgres(args: argparse.Namespace, reg_path: Path, truth_path: Path,
                 model_path: Path) -> int:
    """Build the PostgreSQL index, then trace through both backends in fresh workers."""
    from safehaven.matching.online import RELEASABLE_COLUMNS
    from safehaven.matching.pg_index import BUILD_APPLICATION_NAME, build_index

    if not args.database_url:
        raise SystemExit("--database-url is required with --backend postgres")
    result: dict[str, Any] = {
        "benchmark": "trace_pg",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "memory_gib": round(os.sysconf("SC_PHYS_PAGES")
                                        * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)},
        "people": args.people, "requests": args.requests, "model": str(model_path),
        "server": server_settings(args.database_url),
    }
    if not args.skip_build:
        cols = list(dict.fromkeys(["record_id", *PERSON_SPEC.base, *RELEASABLE_COLUMNS]))
        table = pq.read_table(reg_path, columns=cols)
        # The build's server CPU: poll its backend (parallel index-build workers, which
        # PostgreSQL may add, are separate processes and not counted).
        server: dict[int, float] = {}
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.5):
                for pid in backend_pids(args.database_url, BUILD_APPLICATION_NAME):
                    value = proc_cpu_seconds(pid)
                    if value is not None:
                        server[pid] = value

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        load_before = os.getloadavg()[0]
        t, cpu0 = time.perf_counter(), time.process_time()
        report = build_index(args.database_url, table, PERSON_SPEC,
                             releasable=RELEASABLE_COLUMNS, schema=args.schema,
                             progress=lambda m: print(f"  {m}", flush=True))
        build_seconds, build_cpu = time.perf_counter() - t, time.process_time() - cpu0
        done.set()
        poller.join()
        result["build"] = {
            "seconds": round(build_seconds, 1), "client_cpu_seconds": round(build_cpu, 1),
            "server_backend_cpu_seconds": round(sum(server.values()), 1),
            "steps_seconds": report.steps, "large_blocks": report.large_blocks,
            "peak_rss_mib_of_build_process": round(peak_rss_mb()),
            "load_average_1m_before_after": [round(load_before, 2),
                                             round(os.getloadavg()[0], 2)],
        }
        print(f"built in {build_seconds:.1f}s (client CPU {build_cpu:.1f}s, server backend "
              f"CPU {sum(server.values()):.1f}s)", flush=True)
        del table
        gc.collect()
    result["relation_mib"], result["disk"] = disk_report(args.database_url, args.schema,
                                                         args.people)
    print("relations (MiB):", result["relation_mib"], flush=True)

    workers: dict[str, dict[str, Any]] = {}
    for backend in ("postgres", "memory"):
        out = args.workdir / f"worker_{backend}_{args.people}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", backend,
               "--worker-out", str(out), "--people", str(args.people),
               "--requests", str(args.requests), "--request-seed", str(args.request_seed),
               "--workdir", str(args.workdir), "--model-file", str(model_path),
               "--database-url", args.database_url, "--schema", args.schema]
        subprocess.run(cmd, check=True)
        workers[backend] = json.loads(out.read_text())
        w = workers[backend]
        print(f"{backend}: load {w['load_seconds']}s, RSS {w['rss_mib_before_load']} -> "
              f"{w['rss_mib_after_load']} -> {w['rss_mib_after_traces']} MiB; traces p50 "
              f"{w['p50_ms']} ms, p99 {w['p99_ms']} ms, max {w['max_ms']} ms; client CPU p50 "
              f"{w['client_cpu_p50_ms']} ms; server CPU/trace {w['server_cpu_ms_per_trace']}"
              f" ms; load {w['load_average_1m_before_after']}", flush=True)
    result["candidates_per_trace"] = candidate_counts(
        args.database_url, args.schema, args.workdir /
        f"register_{args.people}.requests_s{args.request_seed}.jsonl", 2000)
    pg_out = [tuple(o) for o in workers["postgres"].pop("outcomes")]
    mem_out = [tuple(o) for o in workers["memory"].pop("outcomes")]
    same = sum(1 for a, b in zip(pg_out, mem_out, strict=True)
               if a[:3] == b[:3] and abs(float(a[3]) - float(b[3])) <= 1e-9)
    result["workers"] = workers
    result["identical_outcomes"] = {"requests": len(pg_out), "identical": same}
    result["accuracy"] = accuracy_of(pg_out, truth_path)
    result["accuracy_memory"] = accuracy_of(mem_out, truth_path)
    print(f"identical outcomes: {same}/{len(pg_out)}; accuracy {result['accuracy']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"trace_pg_{args.people}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0 if same == len(pg_out) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--splink-sample", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--request-seed", type=int, default=2,
                    help="Seed of the evaluated requests (the operating point was chosen "
                         "on seed 1, so the default measures it out of sample).")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/safehaven-bench"))
    ap.add_argument("--backend", choices=("memory", "postgres"), default="memory")
    ap.add_argument("--database-url", default=os.environ.get("SAFEHAVEN_REGISTER_INDEX_URL"),
                    help="PostgreSQL database for --backend postgres (use one of your own).")
    ap.add_argument("--schema", default="register_index")
    ap.add_argument("--skip-build", action="store_true",
                    help="Reuse the PostgreSQL index already built in --schema.")
    ap.add_argument("--model", type=Path, default=None,
                    help="Reuse this trained model instead of training on the register.")
    ap.add_argument("--prior", type=float, default=None,
                    help="With --model: the prior to set (default 1/people).")
    ap.add_argument("--worker", choices=("memory", "postgres"), help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    ap.add_argument("--model-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    if args.worker:
        return worker(args)

    reg_path, req_path, truth_path = ensure_data(args.workdir, args.people, args.requests,
                                                 args.seed, args.request_seed)
    model_path = args.workdir / f"model_{args.people}.json"
    train_seconds = None
    if args.model is not None:
        settings = load_model(args.model)
        settings["probability_two_random_records_match"] = args.prior or 1 / args.people
        model_path = args.workdir / f"model_{args.people}_from_{args.model.stem}.json"
        save_model(settings, model_path)
    if not model_path.exists():
        t = time.perf_counter()
        reg = pq.read_table(reg_path, columns=["record_id", *PERSON_SPEC.base]).to_pandas()
        model = train(PERSON_SPEC, reg, training_sample(reg, 20_000, args.seed),
                      em_blocking=EM_BLOCKING, seed=args.seed)
        save_model(model, model_path)
        train_seconds = time.perf_counter() - t
        del reg
        gc.collect()
        print(f"trained model in {train_seconds:.1f}s")
    if args.backend == "postgres":
        return run_postgres(args, reg_path, truth_path, model_path)

    rss_before = rss_mb()
    t = time.perf_counter()
    matcher = RegisterMatcher.load(reg_path, model_path)
    build_seconds = time.perf_counter() - t
    gc.collect()
    rss_after = rss_mb()
    print(f"index built in {build_seconds:.1f}s; RSS {rss_after:,.0f} MB "
          f"(index arrays {matcher.matcher.index.nbytes() / 2**20:,.0f} MB)")

    requests = [json.loads(line) for line in req_path.open()][: args.requests]
    # What a long-running trace service does after loading: move everything allocated so
    # far out of the cyclic GC's reach, so a full collection never rescans the register.
    gc.collect()
    gc.freeze()
    load_before = os.getloadavg()
    latencies: list[float] = []
    outcomes: list[tuple[str, str, str | None, float]] = []
    cpu: list[float] = []
    for r in requests:
        start, start_cpu = time.perf_counter(), time.thread_time()
        found = matcher.match(r["subject"])
        latencies.append((time.perf_counter() - start) * 1000)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        outcomes.append((r["request_id"], found.status, found.record_id, found.score))
    ms = latencies
    load_after = os.getloadavg()
    print(f"online: {len(ms):,} traces p50 {pct(ms, 50):.2f} ms, p99 {pct(ms, 99):.2f} ms, "
          f"max {max(ms):.1f} ms (CPU time p50 {pct(cpu, 50):.2f}, p99 {pct(cpu, 99):.2f} ms;"
          f" load average {load_after[0]:.1f} on {os.cpu_count()} CPUs)")

    accuracy = accuracy_of(outcomes, truth_path)
    print("accuracy:", json.dumps(accuracy))
    rss_peak_ours = peak_rss_mb()

    # Splink, one request at a time, against the same register and model.
    t = time.perf_counter()
    reg_prepared = splink_table(PERSON_SPEC, pq.read_table(
        reg_path, columns=["record_id", *PERSON_SPEC.base]), "record_id")
    seed_req = splink_frame(PERSON_SPEC, subjects_to_frame([requests[0]["subject"]], ["s"]),
                            "unique_id")
    linker = new_linker(PERSON_SPEC, [("register", reg_prepared), ("requests", seed_req)],
                        load_model(model_path))
    db = linker._db_api
    right = db.register(reg_prepared, dataset_display_name="right_register")
    splink_setup = time.perf_counter() - t
    rng = np.random.default_rng(args.seed)
    sample = rng.choice(len(requests), min(args.splink_sample, len(requests)), replace=False)
    splink_ms: list[float] = []
    agree = 0
    worst = 0.0
    for k, i in enumerate(sample):
        r = requests[int(i)]
        one = splink_frame(PERSON_SPEC, subjects_to_frame([r["subject"]], [r["request_id"]]),
                           "unique_id")
        start = time.perf_counter()
        left = db.register(one, dataset_display_name=f"left_{k}")
        pred = linker.inference.predict_between(left, right).as_pandas_dataframe()
        splink_ms.append((time.perf_counter() - start) * 1000)
        if k % 10 == 0:
            print(f"  splink {k + 1}/{len(sample)}: {splink_ms[-1]:.0f} ms", flush=True)
        ours = matcher.match(r["subject"])
        best = float(pred["match_probability"].max()) if len(pred) else 0.0
        if ours.candidates:
            worst = max(worst, abs(best - ours.candidates[0].score))
        agree += int(abs(best - (ours.candidates[0].score if ours.candidates else 0.0)) < 1e-6)
    print(f"splink: {len(splink_ms)} one-row predict_between p50 {pct(splink_ms, 50):.1f} ms, "
          f"p99 {pct(splink_ms, 99):.1f} ms; best score agrees on {agree}/{len(splink_ms)}")
    ours_sample = [latencies[int(i)] for i in sample]
    ratio_p50 = pct(splink_ms, 50) / pct(ours_sample, 50)
    ratio_mean = statistics.mean(splink_ms) / statistics.mean(ours_sample)
    print(f"speed-up: {ratio_p50:.0f}x at p50, {ratio_mean:.0f}x on the mean")

    result: dict[str, Any] = {
        "benchmark": "trace",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "people": args.people,
        "load_average_1m_before_after_online": [load_before[0], load_after[0]],
        "train_seconds": train_seconds,
        "index_build_seconds": round(build_seconds, 2),
        "rss_mb_before_index": round(rss_before),
        "rss_mb_after_index": round(rss_after),
        "peak_rss_mb_before_splink": round(rss_peak_ours),
        "index_arrays_mb": round(matcher.matcher.index.nbytes() / 2**20),
        "online": {"traces": len(ms), "p50_ms": round(pct(ms, 50), 3),
                   "p90_ms": round(pct(ms, 90), 3), "p99_ms": round(pct(ms, 99), 3),
                   "max_ms": round(max(ms), 3), "mean_ms": round(statistics.mean(ms), 3),
                   "cpu_time_p50_ms": round(pct(cpu, 50), 3),
                   "cpu_time_p99_ms": round(pct(cpu, 99), 3),
                   "note": "wall-clock figures include waiting for a CPU on a shared machine; "
                           "cpu_time is the tracing thread's own CPU time"},
        "accuracy": accuracy,
        "policy": {"threshold": matcher.matcher.policy.threshold,
                   "margin_bits": matcher.matcher.policy.margin_bits,
                   "block_cap": matcher.matcher.policy.block_cap},
        "splink_one_at_a_time": {
            "sample": len(splink_ms), "setup_seconds": round(splink_setup, 2),
            "p50_ms": round(pct(splink_ms, 50), 2), "p99_ms": round(pct(splink_ms, 99), 2),
            "mean_ms": round(statistics.mean(splink_ms), 2),
            "best_score_agrees": agree, "max_abs_score_difference": worst,
        },
        "speedup_vs_splink": {"p50": round(ratio_p50, 1), "mean": round(ratio_mean, 1)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"trace_{args.people}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
