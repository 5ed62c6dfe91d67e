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

Rows go in with ``COPY ... FROM STDIN`` (psycopg ``cursor.copy``), not the ORM.

Timed: ``service.reports.build_report`` (the SQL aggregation) for one agreement and one
month, one agreement and one year, and every agreement over the whole range; the old
per-request Python tally for the one-month query (for comparison); ``ledger.log``
inclusion and consistency proofs; optionally ``ledger.verify.verify_log`` over the log.

    .venv/bin/python benchmarks/bench_pg.py                       # 10 M + 10 M
    .venv/bin/python benchmarks/bench_pg.py --requests 1000000 --ledger 1000000

Creates database ``safehaven_bench`` on the server at ``--admin-url`` and drops it after
(``--keep`` to keep it).  Writes ``benchmarks/results/pg.json`` (or ``--out``).
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

from safehaven.agreements import load_dir
from safehaven.domain.decision import decide
from safehaven.domain.request import parse_request
from safehaven.domain.statistics import Period, tally
from safehaven.ledger import log, merkle
from safehaven.service.reports import ReportQuery, build_report, iter_facts
from safehaven.service.requests import request_body
from safehaven.store.db import make_engine, session_factory, transaction, upgrade

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


def timed(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    """Best-of-``repeat`` wall seconds (the first run also warms the cache)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def bench_reports(factory: Any, python_path: bool) -> dict[str, Any]:
    queries = {
        "one_agreement_one_month": ReportQuery("nhs-police-tracing", date(2017, 6, 1),
                                               date(2017, 6, 30), Period.MONTH),
        "one_agreement_one_year": ReportQuery("nhs-police-tracing", date(2017, 1, 1),
                                              date(2017, 12, 31), Period.MONTH),
        "all_agreements_two_years": ReportQuery(None, date(2017, 1, 1), date(2018, 12, 31),
                                                Period.QUARTER),
    }
    out: dict[str, Any] = {}
    for name, q in queries.items():
        with transaction(factory) as s:
            seconds, report = timed(lambda s=s, q=q: build_report(s, q, public=True))
        received = sum(int(t["received"]) for t in report["totals"]
                       if isinstance(t["received"], int))
        out[name] = {"seconds": round(seconds, 3), "requests_counted": received}
        print(f"  build_report {name}: {seconds:.3f}s over {received:,} requests",
              file=sys.stderr, flush=True)
    if python_path:
        q = queries["one_agreement_one_month"]
        with transaction(factory) as s:
            seconds, _ = timed(lambda: tally(iter_facts(s, q), q.period), repeat=1)
        out["python_tally_one_agreement_one_month"] = {"seconds": round(seconds, 3)}
        print(f"  python tally one month: {seconds:.3f}s", file=sys.stderr, flush=True)
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
        conn.execute(text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{args.database}"'))
    url = make_url(args.admin_url).set(database=args.database)
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        upgrade(engine)
        factory = session_factory(engine)
        raw: Any = engine.raw_connection().driver_connection
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
        result["sizes"] = table_sizes(raw)
        raw.close()
        result["reports"] = bench_reports(factory, python_path=True)
        result["ledger"] = bench_ledger(factory, args.ledger, args.samples, args.verify)
    finally:
        engine.dispose()
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
        admin.dispose()
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("requests", "reports", "ledger")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
