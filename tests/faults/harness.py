"""Fault harness: a real ``safehaven serve`` under mixed traffic, killed with SIGKILL.

Shared by ``tests/faults/`` (a few trials in CI), ``benchmarks/faults.py`` (hundreds) and
``benchmarks/load.py`` (the server helpers).  Why a real process and SIGKILL rather than an
in-process exception: the promise under test is about the disk ("a 201 means it is on
disk"), and only killing the process that holds the open transaction, the WAL and the
group-commit queue tests that.

A trial: start the server (a *restart* from the second trial on), replay a sample of the
previous trial's acknowledged submissions (each must come back 200 with the same id),
run concurrent submits, bulk uploads, reviews, polls and head signing, SIGKILL the server
at a random moment, then check the database offline with :func:`check_invariants`.

Everything is synthetic (no real people) and loopback only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from safehaven.agreements import load_dir
from safehaven.domain.lifecycle import TERMINAL, TRANSITIONS, Event, State
from safehaven.ledger import heads, keys
from safehaven.ledger.verify import verify_log
from safehaven.service import accounts
from safehaven.store.db import open_store, session_factory, transaction
from safehaven.store.models import (
    DisclosureRow,
    LedgerEntryRow,
    RequestRow,
    ReviewRow,
    TransitionRow,
)

PASSWORD = "correct horse battery staple"
AGENCY = "metropolitan-police"
SUSPECT_NHS = "9434765919"
REGISTER = [
    {"record_id": "R-SUSPECT", "nhs_number": SUSPECT_NHS, "family": "Testsuspect",
     "given": "Jo", "birthdate": "1975-02-14", "address": "1 Test Street, Leeds",
     "address-postalcode": "LS1 4AP", "gp_practice": "B86001"},
]
#: A police request that needs one reviewer and, once approved, matches the register.
POLICE: dict[str, Any] = {
    "requester": AGENCY,
    "agreement": "nhs-police-tracing",
    "purpose": "police-serious-crime",
    "made_on": "2017-09-01",
    "subject": {"family": "Testsuspect", "given": "Jo", "birthdate": "1975-02-14",
                "nhs_number": SUSPECT_NHS},
    "grounds": {"offence": "Rape", "offence_date": "2016-02-20", "serious_crime": True},
    "fields": ["address", "address-postalcode"],
}
#: States a stored request may be in: ``received`` and ``decided`` never outlive ``submit``.
RESTING = {s.value for s in State} - {State.RECEIVED.value, State.DECIDED.value}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_stats() -> Iterator[tuple[int, list[str]]]:
    """``(pid, fields after the name)`` of every process's ``/proc/PID/stat``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            yield int(stat.parent.name), stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live children (``safehaven serve --workers N`` runs N workers, and
    multiprocessing's resource tracker, under a supervisor)."""
    return [p for p, fields in _proc_stats() if p == pid or fields[1] == str(pid)]


def running_in_group(pgid: int) -> list[int]:
    """Processes of a process group still running (zombies do not count: in a container
    whose init does not reap, a dead worker can stay a zombie)."""
    return [p for p, fields in _proc_stats()
            if fields[2] == str(pgid) and fields[0] not in ("Z", "X")]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a server and its live children (Linux ``/proc``): the server's
    cost per request, which, unlike wall-clock throughput, does not depend on what else
    the host is doing."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def rss_kib(pid: int) -> int:
    """Resident memory of a server and its live children, KiB."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


@dataclass
class Workspace:
    home: Path
    token: str

    @property
    def db(self) -> Path:
        return self.home / "safehaven.db"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    @property
    def register(self) -> Path:
        return self.home / "register.jsonl"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHAVEN_")}
        return {**env, "SAFEHAVEN_HOME": str(self.home), "SAFEHAVEN_DATABASE_URL": self.url}


def make_workspace(home: Path, reviewers: int = 3) -> Workspace:
    """A migrated SQLite workspace with an agency token, reviewers and an overseer."""
    home.mkdir(parents=True, exist_ok=True)
    engine = open_store(f"sqlite:///{home / 'safehaven.db'}")
    now = datetime.now(UTC)
    with transaction(session_factory(engine)) as s:
        token, _ = accounts.create_agency_token(
            s, load_dir(), AGENCY, scope=None, label="faults", at=now)
        for i in range(reviewers):
            accounts.create_account(s, f"reviewer{i}", "reviewer", PASSWORD, at=now)
        accounts.create_account(s, "overseer", "oversight", PASSWORD, at=now)
    engine.dispose()
    (home / "register.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in REGISTER), "utf-8")
    return Workspace(home, token)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL the server and, with ``--workers``, every worker: the server runs in a
        session of its own, so the whole process group goes at once, as in a power cut."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def start_server(ws: Workspace, *, timeout: float = 60.0,
                 preexec: Callable[[], None] | None = None,
                 extra_env: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = ()) -> Server:
    port = free_port()
    # The server's stderr goes to a file, not a pipe: a pipe nobody reads fills up after
    # 64 KiB of log lines and then blocks every worker that logs (seen: a load run hung on
    # a burst of errors instead of reporting them).
    log = ws.home / "server.stderr"
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from safehaven.cli import main; main()", "serve",
             "--host", "127.0.0.1", "--port", str(port), "--register", str(ws.register),
             *extra_args],
            env={**ws.env(), **(extra_env or {})}, stdout=subprocess.DEVNULL,
            stderr=stderr, preexec_fn=preexec, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = log.read_text("utf-8", errors="replace")
            raise AssertionError(f"server exited with {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return Server(proc, port)
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start in time")


@dataclass
class Acks:
    """What the server acknowledged before it died (the promises to check)."""

    submits: dict[str, str] = field(default_factory=dict)  # request_key -> public id
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # request_key -> body
    verdicts: list[tuple[str, str]] = field(default_factory=list)  # (public id, reviewer)
    server_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _body(key: str) -> dict[str, Any]:
    return {**POLICE, "request_id": key}


def _submitter(base: str, token: str, prefix: str, acks: Acks, stop: threading.Event) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as c:
        n = 0
        while not stop.is_set():
            key = f"{prefix}-s{threading.get_ident() % 10_000}-{n}"
            n += 1
            body = _body(key)
            r = c.post("/v1/requests", json=body)
            if r.status_code in (200, 201):
                with acks.lock:
                    acks.submits[key] = r.json()["id"]
                    acks.bodies[key] = body
            elif r.status_code >= 500:
                acks.server_errors.append(f"submit {r.status_code}")
            if n % 5 == 0:
                c.get(f"/v1/requests/{r.json().get('id', 'x')}" if r.status_code < 300
                      else "/v1/requests?limit=5")


def _bulk(base: str, token: str, prefix: str, acks: Acks, stop: threading.Event,
          rows: int) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    n = 0
    while not stop.is_set():
        keys_ = [f"{prefix}-b{n}-{i}" for i in range(rows)]
        n += 1
        text = "".join(json.dumps(_body(k)) + "\n" for k in keys_)
        with httpx.stream("POST", f"{base}/v1/requests/bulk", content=text, headers=headers,
                          timeout=60) as r:
            for line in r.iter_lines():
                item = json.loads(line)
                if "row" not in item:
                    continue
                if item["status"] in (200, 201):
                    k = keys_[item["row"] - 1]
                    with acks.lock:
                        acks.submits[k] = item["id"]
                        acks.bodies[k] = _body(k)
                elif item["status"] >= 500:
                    acks.server_errors.append(f"bulk row {item['status']}")


def _reviewer(base: str, username: str, acks: Acks, stop: threading.Event,
              rng: random.Random) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/v1/session", json={"username": username, "password": PASSWORD})
        csrf = r.json()["csrf_token"]
        while not stop.is_set():
            queue = c.get("/v1/review/queue?limit=20").json()["requests"]
            todo = [q["id"] for q in queue if not q["reviewed_by_me"]]
            if not todo:
                time.sleep(0.02)
                continue
            rid = rng.choice(todo)
            verdict = "approve" if rng.random() < 0.8 else "refuse"
            r = c.post(f"/v1/review/requests/{rid}/verdict",
                       json={"verdict": verdict, "reason": "fault-suite check"},
                       headers={"X-CSRF-Token": csrf})
            if r.status_code == 200:
                with acks.lock:
                    acks.verdicts.append((rid, username))
            elif r.status_code >= 500:
                acks.server_errors.append(f"verdict {r.status_code}")


def _overseer(base: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        c.post("/v1/session", json={"username": "overseer", "password": PASSWORD})
        while not stop.is_set():
            c.get("/v1/oversight/ledger/head")
            c.get("/v1/oversight/statistics")
            time.sleep(0.05)


def _guard(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
    def run() -> None:
        # The server is killed under us: broken connections and cut-off bodies are expected.
        with contextlib.suppress(httpx.TransportError, json.JSONDecodeError, KeyError):
            fn(*args)
    return run


def drive(server: Server, ws: Workspace, prefix: str, *, seconds: float,
          rng: random.Random, submitters: int = 3, bulk_rows: int = 50,
          kill: bool = True) -> Acks:
    """Mixed traffic; ``seconds`` after the first acknowledgement, SIGKILL (if ``kill``)."""
    acks = Acks()
    stop = threading.Event()
    workers = [_guard(_submitter, server.base, ws.token, prefix, acks, stop)
               for _ in range(submitters)]
    workers.append(_guard(_bulk, server.base, ws.token, prefix, acks, stop, bulk_rows))
    workers += [_guard(_reviewer, server.base, f"reviewer{i}", acks, stop,
                       random.Random(rng.random())) for i in range(2)]
    workers.append(_guard(_overseer, server.base, stop))
    threads = [threading.Thread(target=w, daemon=True) for w in workers]
    for t in threads:
        t.start()
    # The kill window opens at the first acknowledgement: on a loaded machine the first
    # requests can take seconds, and a kill before any promise was made proves nothing.
    deadline = time.monotonic() + 60
    while not acks.submits and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(seconds)
    if kill:
        server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    return acks


def replay(server: Server, ws: Workspace, acks: Acks, sample: int,
           rng: random.Random) -> list[str]:
    """Resubmit acknowledged requests after a restart: each must be 200 with the same id."""
    problems = []
    keys_ = rng.sample(sorted(acks.submits), min(sample, len(acks.submits)))
    with httpx.Client(base_url=server.base, timeout=30,
                      headers={"Authorization": f"Bearer {ws.token}"}) as c:
        for k in keys_:
            r = c.post("/v1/requests", json=acks.bodies[k])
            if r.status_code != 200 or r.json().get("id") != acks.submits[k]:
                problems.append(f"replay {k}: {r.status_code} {r.text[:200]}")
    return problems


def sign_head(ws: Workspace) -> None:
    """Sign a tree head offline with the workspace key, as ``safehaven ledger head`` does.

    Heads signed between trials make every later verification also check that the log
    after the next crash is *consistent* with what was signed before it (nothing rewritten).
    """
    key = keys.load_or_create_signing_key(ws.home / keys.KEY_FILE)
    engine = create_engine(ws.url)
    try:
        with Session(engine) as s, s.begin():
            heads.sign_head(s, key)
    finally:
        engine.dispose()


def check_invariants(ws: Workspace, acks: Acks | None = None) -> list[str]:
    """Everything that must hold of the database after any crash; [] when all is well."""
    problems: list[str] = []
    conn = sqlite3.connect(ws.db)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    if integrity != [("ok",)]:
        problems.append(f"integrity_check: {integrity[:3]}")
    engine = create_engine(ws.url)
    try:
        with Session(engine) as s:
            problems += _check_rows(s, acks)
        pub_file = ws.home / keys.PUBLIC_KEY_FILE
        pub = keys.load_public_key(pub_file.read_bytes()) if pub_file.exists() else None
        with engine.connect() as conn2:
            report = verify_log(conn2, pub)
        if not report.ok:
            problems.append(f"ledger verify: {report.problems[:3]}")
    finally:
        engine.dispose()
    return problems


def _check_rows(s: Session, acks: Acks | None) -> list[str]:
    problems: list[str] = []
    rows = {r.id: r for r in s.execute(select(RequestRow)).scalars()}
    by_key = Counter((r.requester, r.request_key) for r in rows.values() if r.request_key)
    dupes = [k for k, n in by_key.items() if n > 1]
    if dupes:
        problems.append(f"duplicated request keys: {dupes[:5]}")
    if acks is not None:
        stored = {r.request_key: r.public_id for r in rows.values() if r.requester == AGENCY}
        for key, public_id in acks.submits.items():
            if stored.get(key) != public_id:
                problems.append(f"acknowledged {key} -> {public_id} missing "
                                f"(stored {stored.get(key)})")
        reviewed = {tuple(x) for x in s.execute(
            select(RequestRow.public_id, ReviewRow.reviewer)
            .join(ReviewRow, ReviewRow.request_id == RequestRow.id)).all()}
        for pair in acks.verdicts:
            if pair not in reviewed:
                problems.append(f"acknowledged verdict {pair} missing")
    # Lifecycle: every request's transitions replay legally and end in its stored state.
    chains: dict[int, list[TransitionRow]] = {}
    for t in s.execute(select(TransitionRow).order_by(TransitionRow.id)).scalars():
        chains.setdefault(t.request_id, []).append(t)
    for rid, row in rows.items():
        chain = chains.get(rid, [])
        if row.state not in RESTING:
            problems.append(f"request {row.public_id}: stored in transient state {row.state}")
        state: str | None = None
        for t in chain:
            if t.from_state != state:
                problems.append(f"request {row.public_id}: transition from {t.from_state} "
                                f"but state was {state}")
                break
            if state is None:
                ok = t.event == "receive" and t.to_state == State.RECEIVED.value
            else:
                nxt = TRANSITIONS.get((State(state), Event(t.event)))
                ok = nxt is not None and nxt.value == t.to_state
            if not ok:
                problems.append(f"request {row.public_id}: illegal {state} --{t.event}--> "
                                f"{t.to_state}")
                break
            state = t.to_state
        if state != row.state:
            problems.append(f"request {row.public_id}: state {row.state} but transitions "
                            f"end in {state}")
    # Every transition has its ledger entry: a step written without one (or the reverse)
    # is a lifecycle the tamper-evident log does not show.
    logged = Counter(
        json.loads(e)["event"].get("request") for e in s.execute(
            select(LedgerEntryRow.event).where(
                LedgerEntryRow.event.contains('"type":"request.transition"'))).scalars())
    for rid, row in rows.items():
        if logged.get(row.public_id, 0) != len(chains.get(rid, [])):
            problems.append(f"request {row.public_id}: {len(chains.get(rid, []))} transitions "
                            f"but {logged.get(row.public_id, 0)} ledger entries")
            break
    # No disclosure twice, and none without the lifecycle saying so.
    per_request = Counter(s.execute(select(DisclosureRow.request_id)).scalars())
    twice = [rid for rid, n in per_request.items() if n > 1]
    if twice:
        problems.append(f"disclosed twice: {twice[:5]}")
    disclose_events = Counter(s.execute(
        select(TransitionRow.request_id).where(TransitionRow.event == "disclose")).scalars())
    if any(n > 1 for n in disclose_events.values()):
        problems.append("a request has two disclose transitions")
    if set(per_request) != set(disclose_events):
        problems.append("disclosure rows and disclose transitions disagree")
    after = {State.DISCLOSED.value, State.NOTIFIED.value, State.EXEMPTED.value}
    for rid in per_request:
        if rows[rid].state not in after:
            problems.append(f"request {rows[rid].public_id}: disclosure row in state "
                            f"{rows[rid].state}")
    terminal = {t.value for t in TERMINAL}
    n_terminal = s.execute(select(func.count()).select_from(RequestRow)
                           .where(RequestRow.state.in_(terminal))).scalar_one()
    assert n_terminal <= len(rows)
    return problems


@dataclass
class TrialResult:
    trial: int
    workers: int
    acked_submits: int
    acked_verdicts: int
    replayed: int
    seconds_before_kill: float
    problems: list[str]


def run_trials(home: Path, trials: int, *, seed: int = 7, min_s: float = 0.3,
               max_s: float = 2.0, replay_sample: int = 20,
               report: Callable[[TrialResult], None] | None = None) -> list[TrialResult]:
    """``trials`` kill -9 trials over one workspace (state accumulates, as in real life).

    Odd trials run ``serve --workers 2`` (two processes, two group-commit writers taking
    turns at the database), even ones a single process; a kill takes the whole process
    group, as a power cut would.
    """
    rng = random.Random(seed)
    ws = make_workspace(home)
    sign_head(ws)
    results: list[TrialResult] = []
    previous: Acks | None = None
    for n in range(trials):
        workers = 2 if n % 2 else 1
        server = start_server(ws, extra_args=("--workers", str(workers)))
        problems: list[str] = []
        replayed = 0
        try:
            if previous is not None:
                problems += replay(server, ws, previous, replay_sample, rng)
                replayed = min(replay_sample, len(previous.submits))
            wait = rng.uniform(min_s, max_s)
            acks = drive(server, ws, f"t{n}-{uuid.uuid4().hex[:6]}", seconds=wait, rng=rng)
        finally:
            server.kill()
        problems += [f"5xx before the kill: {e}" for e in acks.server_errors]
        problems += check_invariants(ws, acks)
        sign_head(ws)
        result = TrialResult(n, workers, len(acks.submits), len(acks.verdicts), replayed,
                             wait, problems)
        results.append(result)
        if report:
            report(result)
        previous = acks
    # A last restart: the server comes back and the last trial's promises still replay.
    server = start_server(ws)
    try:
        if previous is not None:
            tail = replay(server, ws, previous, replay_sample, rng)
            if tail:
                results[-1].problems.extend(tail)
    finally:
        server.kill()
    return results
