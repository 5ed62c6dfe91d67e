"""PostgreSQL at national volume: 10 M requests and 10 M ledger entries, then the report
and ledger read paths timed through the real code.

What is loaded, in the store's real schema (the Alembic migrations, ``store.db.upgrade``):

* ``requests``/``decisions``: bodies and rule lists are *real* — each generated request is
  one of the bundled example requests (``src/safehaven/examples``), decided by the real
  engine (``domain.decision.decide``), with a new id and a receipt time spread over two
  years; the lifecycle that follows (review, match, disclosure with or without new
  information, notice or exemption) is drawn at realistic rates and written as the
  service writes it (``transitions``, ``reviews``, ``matches``, ``disclosures``,
  ``notifications``);
* ``ledger_entries``/``ledger_nodes``/``ledger_state``: lifecycle-shaped events with the
  real leaf encoding, and every complete subtree hash, computed as ``log.append_many``
  computes them, so proofs and ``verify_log`` run against a valid tree.

Rows go in with ``COPY ... FROM STDIN`` (psycopg ``cursor.copy``), not the ORM, so the
report rollup (``report_daily``, which the service maintains step by step) is then built
the way an operator repairs it: ``service.reports.rebuild_rollup`` (timed).

Timed, through the real code (wall-clock, this process's CPU and the PostgreSQL backend's
CPU): ``service.reports.build_report`` — which reads the rollup — for one agreement and one
month, one agreement and one year, and every agreement over the whole range; the raw
aggregation (``reports.tally_sql``, the reference definition the rollup must equal, and
what ``build_report`` ran before the rollup) for the same three, checked equal; the old
per-request Python tally for the one-month query; ``service.requests.submit`` on the loaded
store (the hot path, now with its rollup upsert); ``ledger.log`` inclusion and consistency
proofs; optionally ``ledger.verify.verify_log`` over the log.

    .venv/bin/python benchmarks/bench_pg.py                       # 10 M + 10 M
    .venv/bin/python benchmarks/bench_pg.py --requests 1000000 --ledger 1000000

Creates database ``safehaven_bench`` on the server at ``--admin-url`` (it must run on this
machine for the backend CPU figures) and drops it after (``--keep`` to keep it; ``--reuse``
skips the load and times a kept database again).  Writes ``benchmarks/results/pg.json``
(or ``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from safehaven.agreements import load_dir
from safehaven.domain.decision import decide
from safehaven.domain.request import parse_request
from safehaven.domain.statistics import Period, tally
from safehaven.ledger import log, merkle
from safehaven.service import requests as svc
from safehaven.service import rollup
from safehaven.service.reports import (
    ReportQuery,
    build_report,
    iter_facts,
    rebuild_rollup,
    tally_rollup,
    tally_sql,
)
from safehaven.service.requests import request_body
from safehaven.store.db import (
    make_engine,
    read_only_factory,
    session_factory,
    transaction,
    upgrade,
)

RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "safehaven" / "examples"
START = datetime(2017, 1, 1, tzinfo=UTC)
DAYS = 730
CHUNK = 200_000


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _esc(value: str) -> str:
    """COPY text format: backslash, tab and newline must be escaped."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def templates() -> list[dict[str, Any]]:
    """The bundled example requests, each decided by the real engine (firewall on)."""
    agreements = load_dir()
    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        request = parse_request(path.read_bytes())
        decision = decide(request, agreements, received_on=request.made_on, firewall_on=True,
                          cap_usage=0)
        ref = decision.agreement
        out.append({
            "requester": request.requester, "agreement": request.agreement,
            "purpose": request.purpose, "made_on": request.made_on.isoformat(),
            "body": _esc(_json(request_body(request))),
            "sha": hashlib.sha256(_json(request_body(request)).encode()).hexdigest(),
            "outcome": decision.outcome.value,
            "rules": _esc(_json([r.to_dict() for r in decision.rules])),
            "agreement_id": ref.id if ref else "\\N",
            "agreement_version": ref.version if ref else "\\N",
            "agreement_sha256": ref.sha256 if ref else "\\N",
            "reviewers": decision.reviewers_required,
            "fields": _esc(_json(list(decision.permitted_fields))),
        })
    return out


class Copier:
    """Buffers COPY text rows per table and flushes them in large writes."""

    COLUMNS: ClassVar[dict[str, str]] = {
        "requests": "id, public_id, requester, request_key, agreement_id, purpose, made_on, "
                    "received_at, body, body_sha256, state, updated_at",
        "decisions": "id, request_id, outcome, rules, agreement_id, agreement_version, "
                     "agreement_sha256, firewall_on, reviewers_required, permitted_fields, "
                     "decided_at",
        "reviews": "id, request_id, reviewer, verdict, reason, reviewed_at",
        "matches": "id, request_id, status, score, record_id, matched_at",
        "disclosures": "id, request_id, fields, new_information, disclosed_at",
        "notifications": "id, request_id, kind, exemption_id, reason, review_on, "
                         "recorded_by, recorded_at",
        "transitions": "id, request_id, from_state, to_state, event, actor, at",
        "ledger_entries": "idx, leaf_hash, event",
        "ledger_nodes": "level, idx, hash",
    }

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.buffers: dict[str, io.StringIO] = {t: io.StringIO() for t in self.COLUMNS}
        self.ids: dict[str, int] = dict.fromkeys(self.COLUMNS, 0)
        self.rows: dict[str, int] = dict.fromkeys(self.COLUMNS, 0)

    def next_id(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table]

    def add(self, table: str, line: str) -> None:
        self.buffers[table].write(line)
        self.rows[table] += 1

    def flush(self) -> None:
        with self.raw.cursor() as cur:
            for table, buf in self.buffers.items():
                data = buf.getvalue()
                if not data:
                    continue
                with cur.copy(f"COPY {table} ({self.COLUMNS[table]}) FROM STDIN") as copy:
                    copy.write(data)
                self.buffers[table] = io.StringIO()
        self.raw.commit()


def load_requests(raw: Any, n: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    tpl = templates()
    c = Copier(raw)
    ts = "%Y-%m-%d %H:%M:%S+00"
    for i in range(1, n + 1):
        t = tpl[rng.randrange(len(tpl))]
        at = START + timedelta(days=rng.randrange(DAYS), seconds=rng.randrange(86_400))
        at_s = at.strftime(ts)
        rid = c.next_id("requests")
        outcome = t["outcome"]
        steps = [("\\N", "received", "receive", t["requester"])]
        state = "decided"
        steps.append(("received", "decided", "decide", "engine"))
        if outcome == "refused":
            steps.append(("decided", "refused", "refuse", "engine"))
            state = "refused"
        elif outcome == "needs_review":
            steps.append(("decided", "in_review", "send_to_review", "engine"))
            state = "in_review"
            if rng.random() < 0.9:  # reviewed (the rest are still pending)
                verdict = "refuse" if rng.random() < 0.2 else "approve"
                c.add("reviews", f"{c.next_id('reviews')}\t{rid}\trev{rng.randrange(50)}\t"
                      f"{verdict}\treason\t{at_s}\n")
                if verdict == "refuse":
                    steps.append(("in_review", "refused", "review_refuse", "reviewer"))
                    state = "refused"
                else:
                    steps.append(("in_review", "approved", "review_approve", "reviewer"))
                    state = "approved"
        else:
            steps.append(("decided", "approved", "approve", "engine"))
            state = "approved"
        if state == "approved" and rng.random() < 0.95:
            status = rng.choices(["matched", "ambiguous", "no_match"], [0.8, 0.05, 0.15])[0]
            record = f"R{rng.randrange(70_000_000)}" if status == "matched" else "\\N"
            c.add("matches", f"{c.next_id('matches')}\t{rid}\t{status}\t"
                  f"{rng.random():.6f}\t{record}\t{at_s}\n")
            if status == "matched":
                steps.append(("approved", "matched", "match", "engine"))
                state = "matched"
            else:
                steps.append(("approved", "no_match", "no_match", "engine"))
                state = "no_match"
        if state == "matched" and rng.random() < 0.95:
            new = "t" if rng.random() < 0.3 else "f"
            c.add("disclosures", f"{c.next_id('disclosures')}\t{rid}\t{t['fields']}\t{new}\t"
                  f"{at_s}\n")
            steps.append(("matched", "disclosed", "disclose", "engine"))
            state = "disclosed"
            if rng.random() < 0.85:
                if rng.random() < 0.6:
                    c.add("notifications", f"{c.next_id('notifications')}\t{rid}\tnotified\t"
                          f"\\N\t\\N\t\\N\toperator\t{at_s}\n")
                    steps.append(("disclosed", "notified", "notify", "operator"))
                    state = "notified"
                else:
                    c.add("notifications", f"{c.next_id('notifications')}\t{rid}\texempted\t"
                          f"crime-prejudice\tprejudice\t{at.date().isoformat()}\toperator\t"
                          f"{at_s}\n")
                    steps.append(("disclosed", "exempted", "exempt", "operator"))
                    state = "exempted"
        c.add("requests", f"{rid}\t{rid:036d}\t{t['requester']}\tk{rid}\t{t['agreement']}\t"
              f"{t['purpose']}\t{t['made_on']}\t{at_s}\t{t['body']}\t{t['sha']}\t{state}\t"
              f"{at_s}\n")
        c.add("decisions", f"{c.next_id('decisions')}\t{rid}\t{outcome}\t{t['rules']}\t"
              f"{t['agreement_id']}\t{t['agreement_version']}\t{t['agreement_sha256']}\tt\t"
              f"{t['reviewers']}\t{t['fields']}\t{at_s}\n")
        for frm, to, ev, actor in steps:
            c.add("transitions", f"{c.next_id('transitions')}\t{rid}\t{frm}\t{to}\t{ev}\t"
                  f"{actor}\t{at_s}\n")
        if i % CHUNK == 0:
            c.flush()
            print(f"  requests {i:,}", file=sys.stderr, flush=True)
    c.flush()
    with raw.cursor() as cur:  # identity sequences must continue after the loaded ids
        for table in ("requests", "decisions", "reviews", "matches", "disclosures",
                      "notifications", "transitions"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"GREATEST((SELECT max(id) FROM {table}), 1))")
        cur.execute("ANALYZE")
    raw.commit()
    return {t: c.rows[t] for t in c.COLUMNS if not t.startswith("ledger")}


def load_ledger(raw: Any, n: int, seed: int) -> None:
    """Entries and complete-subtree hashes exactly as ``log.append_many`` writes them."""
    rng = random.Random(seed)
    c = Copier(raw)
    sha = hashlib.sha256
    frontier: list[bytes] = []
    states = [("received", "decided", "decide"), ("decided", "approved", "approve"),
              ("approved", "matched", "match"), ("matched", "disclosed", "disclose")]
    for i in range(n):
        frm, to, ev = states[i % 4]
        at = (START + timedelta(seconds=i * 6)).isoformat()
        event = {"type": "request.transition", "request": f"{i // 4:036d}", "from": frm,
                 "to": to, "event": ev, "actor": "engine", "at": at,
                 "detail": {"n": rng.randrange(1000)}}
        leaf = log.encode_leaf(event, i)
        cur = sha(b"\x00" + leaf).digest()
        c.add("ledger_entries", f"{i}\t\\\\x{cur.hex()}\t{_esc(leaf.decode())}\n")
        level, k = 0, i
        while k & 1:
            cur = sha(b"\x01" + frontier.pop() + cur).digest()
            level += 1
            k >>= 1
            c.add("ledger_nodes", f"{level}\t{k}\t\\\\x{cur.hex()}\n")
        frontier.append(cur)
        if (i + 1) % CHUNK == 0:
            c.flush()
            if (i + 1) % (CHUNK * 10) == 0:
                print(f"  ledger {i + 1:,}", file=sys.stderr, flush=True)
    c.flush()
    with raw.cursor() as cur:
        cur.execute("UPDATE ledger_state SET size = %s, frontier = %s WHERE id = 1",
                    (n, b"".join(frontier)))
        cur.execute("ANALYZE ledger_entries")
        cur.execute("ANALYZE ledger_nodes")
    raw.commit()


def backend_cpu(session: Session) -> float | None:
    """CPU seconds the PostgreSQL backend serving ``session`` has used so far (``/proc``;
    ``None`` when the server is not on this machine)."""
    pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(session: Session, fn: Any, repeat: int = 3) -> tuple[dict[str, Any], Any]:
    """Wall, client CPU and server CPU seconds of each run; the first run also warms the
    cache, so the best run is the steady state and the first the cold-ish one."""
    runs: list[dict[str, float | None]] = []
    result = None
    for _ in range(repeat):
        server = backend_cpu(session)
        cpu, t = time.process_time(), time.perf_counter()
        result = fn()
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        after = backend_cpu(session)
        runs.append({"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                     "server_cpu_seconds": None if server is None or after is None
                     else round(after - server, 2)})
    best = min(runs, key=lambda r: r["seconds"] or 0.0)
    return {**best, "first_seconds": runs[0]["seconds"], "runs": len(runs)}, result


def _cmp(table: dict[Any, Any]) -> dict[Any, Any]:
    return {k: (v.as_dict(), dict(v.refused_by_rule)) for k, v in table.items()}


QUERIES = {
    "one_agreement_one_month": ReportQuery("nhs-police-tracing", date(2017, 6, 1),
                                           date(2017, 6, 30), Period.MONTH),
    "one_agreement_one_year": ReportQuery("nhs-police-tracing", date(2017, 1, 1),
                                          date(2017, 12, 31), Period.MONTH),
    "all_agreements_two_years": ReportQuery(None, date(2017, 1, 1), date(2018, 12, 31),
                                            Period.QUARTER),
}


def bench_rebuild(factory: Any) -> dict[str, Any]:
    """Fill the rollup from the COPY-loaded raw tables, as ``safehaven reports rebuild``."""
    with transaction(factory) as s:
        stats, result = timed(s, lambda: rebuild_rollup(s), repeat=1)
    out = {**stats, **result.as_dict()}
    print(f"  rebuild_rollup: {out}", file=sys.stderr, flush=True)
    return out


def bench_reports(engine: Any, python_path: bool, raw: bool) -> dict[str, Any]:
    """``build_report`` (the rollup) and the raw aggregation it replaced, per query."""
    reader = read_only_factory(engine)  # as the API's and the web page's reads
    out: dict[str, Any] = {}
    for name, q in QUERIES.items():
        with transaction(reader) as s:
            stats, report = timed(s, lambda s=s, q=q: build_report(s, q, public=True))
            received = sum(int(t["received"]) for t in report["totals"]
                           if isinstance(t["received"], int))
            entry: dict[str, Any] = {"rollup": stats, "requests_counted": received,
                                     "rows": len(report["rows"])}
            if raw:
                repeat = 1 if q.agreement is None else 2
                raw_stats, table = timed(s, lambda s=s, q=q: tally_sql(s, q), repeat=repeat)
                entry["raw_aggregation"] = raw_stats
                entry["rollup_equals_raw"] = _cmp(tally_rollup(s, q)) == _cmp(table)
        out[name] = entry
        print(f"  {name}: rollup {stats['seconds']:.3f}s "
              + (f"raw {entry['raw_aggregation']['seconds']:.3f}s "
                 f"equal={entry['rollup_equals_raw']} " if raw else "")
              + f"over {received:,} requests", file=sys.stderr, flush=True)
    if python_path:
        q = QUERIES["one_agreement_one_month"]
        with transaction(reader) as s:
            stats, _ = timed(s, lambda: tally(iter_facts(s, q), q.period), repeat=1)
        out["python_tally_one_agreement_one_month"] = stats
        print(f"  python tally one month: {stats}", file=sys.stderr, flush=True)
    return out


def bench_submit(factory: Any, n: int) -> dict[str, Any]:
    """``service.requests.submit`` on the loaded store, one transaction each (police
    tracing: needs review, three steps, one rollup upsert), and the share of its client
    CPU spent in ``rollup.record_steps``."""
    agreements = load_dir()
    example = parse_request((EXAMPLES / "police-serious-crime.json").read_bytes())
    run = time.time_ns()  # fresh idempotency keys on a --reuse'd store too
    requests = [example.model_copy(update={"request_id": f"bench-{run}-{i}"})
                for i in range(n)]
    spent = [0.0]
    record_steps = rollup.record_steps

    def measured(*args: Any) -> None:
        t = time.process_time()
        record_steps(*args)
        spent[0] += time.process_time() - t

    rollup.record_steps = measured  # type: ignore[assignment]
    try:
        wall: list[float] = []
        cpu = time.process_time()
        for request in requests:
            t = time.perf_counter()
            with transaction(factory) as s:
                svc.submit(s, request, agreements, received_at=datetime.now(UTC))
            wall.append(time.perf_counter() - t)
        cpu = time.process_time() - cpu
    finally:
        rollup.record_steps = record_steps
    wall.sort()
    out = {"submits": n, "p50_ms": round(wall[n // 2] * 1000, 2),
           "p99_ms": round(wall[int(n * 0.99)] * 1000, 2),
           "client_cpu_ms_per_submit": round(cpu / n * 1000, 3),
           "rollup_record_steps_cpu_ms_per_submit": round(spent[0] / n * 1000, 3)}
    print(f"  submit on the loaded store: {out}", file=sys.stderr, flush=True)
    return out


def bench_ledger(factory: Any, n: int, samples: int, verify: bool) -> dict[str, Any]:
    rng = random.Random(1)
    ms: list[float] = []
    ok = True
    with transaction(factory) as s:
        root = log.root_at(s, n)
        for _ in range(samples):
            i = rng.randrange(n)
            t = time.perf_counter()
            proof = log.inclusion_proof(s, i, n)
            ms.append((time.perf_counter() - t) * 1000)
            data, _ = log.entry(s, i)
            ok &= merkle.verify_inclusion(merkle.leaf_hash(data), i, n, proof, root)
        cms: list[float] = []
        for _ in range(samples // 4):
            old = rng.randrange(1, n)
            t = time.perf_counter()
            log.consistency_proof(s, old, n)
            cms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    cms.sort()
    out: dict[str, Any] = {
        "entries": n, "samples": samples, "all_verified": ok,
        "inclusion_p50_ms": round(ms[len(ms) // 2], 3),
        "inclusion_p99_ms": round(ms[int(len(ms) * 0.99)], 3),
        "inclusion_mean_ms": round(statistics.fmean(ms), 3),
        "consistency_p50_ms": round(cms[len(cms) // 2], 3),
        "consistency_p99_ms": round(cms[int(len(cms) * 0.99)], 3),
    }
    print(f"  ledger proofs at {n:,}: p50 {out['inclusion_p50_ms']} ms, "
          f"p99 {out['inclusion_p99_ms']} ms, verified={ok}", file=sys.stderr, flush=True)
    if verify:
        from safehaven.ledger.verify import verify_log

        engine = factory.kw["bind"]
        t = time.perf_counter()
        cpu = time.process_time()
        with engine.connect() as conn:
            report = verify_log(conn, None)
        out["verify"] = {"seconds": round(time.perf_counter() - t, 1),
                         "cpu_seconds": round(time.process_time() - cpu, 1),
                         "ok": report.ok, "size": report.size}
        print(f"  verify_log: {out['verify']}", file=sys.stderr, flush=True)
    return out


def table_sizes(raw: Any) -> dict[str, Any]:
    with raw.cursor() as cur:
        cur.execute("SELECT relname, pg_total_relation_size(oid) FROM pg_class "
                    "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
                    "ORDER BY 2 DESC")
        sizes = {str(name): round(int(b) / 2**20, 1) for name, b in cur.fetchall()}
        cur.execute("SELECT pg_database_size(current_database())")
        row = cur.fetchone()
    return {"tables_mib": sizes, "database_mib": round(int(row[0]) / 2**20, 1) if row else None}


def load(raw: Any, factory: Any, args: Any, result: dict[str, Any]) -> None:
    """COPY the requests and the ledger in, vacuum, then build the rollup from them."""
    with raw.cursor() as cur:
        # Bulk-load settings for this session only: the generated rows are consistent
        # by construction, so per-row foreign-key triggers are skipped (replica role),
        # and a crash mid-load just means loading again (no synchronous commit).
        cur.execute("SET session_replication_role = replica")
        cur.execute("SET synchronous_commit = off")
    raw.commit()
    t = time.perf_counter()
    rows = load_requests(raw, args.requests, seed=8)
    result["requests"] = {"count": args.requests, "rows": rows,
                          "load_seconds": round(time.perf_counter() - t, 1)}
    print(f"loaded {args.requests:,} requests in {result['requests']['load_seconds']}s",
          file=sys.stderr, flush=True)
    t = time.perf_counter()
    load_ledger(raw, args.ledger, seed=9)
    result["ledger_load_seconds"] = round(time.perf_counter() - t, 1)
    print(f"loaded {args.ledger:,} ledger entries in {result['ledger_load_seconds']}s",
          file=sys.stderr, flush=True)
    # Index-only scans need the visibility map; autovacuum sets it on insert-mostly
    # tables in production (PostgreSQL >= 13), a bulk load does it here.
    t = time.perf_counter()
    raw.autocommit = True
    with raw.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    result["vacuum_analyze_seconds"] = round(time.perf_counter() - t, 1)
    result["rollup_rebuild"] = bench_rebuild(factory)
    with raw.cursor() as cur:
        cur.execute("VACUUM ANALYZE report_daily")
        cur.execute("VACUUM ANALYZE report_daily_refusals")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--admin-url",
                    default=os.environ.get("SAFEHAVEN_TEST_PG_URL",
                                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--database", default="safehaven_bench")
    ap.add_argument("--requests", type=int, default=10_000_000)
    ap.add_argument("--ledger", type=int, default=10_000_000)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--verify", action="store_true", help="Also run verify_log (slow).")
    ap.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    ap.add_argument("--reuse", action="store_true",
                    help="Time a database kept by an earlier --keep run (no load).")
    ap.add_argument("--no-raw", action="store_true",
                    help="Skip timing the raw aggregation (minutes at 10 M).")
    ap.add_argument("--submits", type=int, default=2000,
                    help="Submits timed on the loaded store (0: none).")
    ap.add_argument("--out", type=Path, default=RESULTS / "pg.json")
    args = ap.parse_args(argv)

    result: dict[str, Any] = {
        "benchmark": "pg", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        result["server"] = conn.execute(text("SHOW server_version")).scalar()
        if not args.reuse:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{args.database}"'))
    url = make_url(args.admin_url).set(database=args.database)
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        upgrade(engine)
        factory = session_factory(engine)
        # Hold the pool's proxy: dropped, it would hand this (autocommit) connection back to
        # the pool while still in use here.
        pooled = engine.raw_connection()
        raw: Any = pooled.driver_connection
        if not args.reuse:
            load(raw, factory, args, result)
        result["sizes"] = table_sizes(raw)
        pooled.invalidate()  # session settings (replica role, autocommit) go with it
        result["reports"] = bench_reports(engine, python_path=True, raw=not args.no_raw)
        result["ledger"] = bench_ledger(factory, args.ledger, args.samples, args.verify)
        if args.submits:
            result["submit"] = bench_submit(factory, args.submits)
    finally:
        engine.dispose()
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
        admin.dispose()
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result.get(k) for k in ("requests", "rollup_rebuild", "reports",
                                                 "ledger", "submit")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
