"""``safehaven link`` (a whole file, Splink) and ``safehaven trace`` (one request, online)."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import typer

from safehaven.cli.common import (
    AgreementsOpt,
    DatabaseOpt,
    JsonOpt,
    fail,
    load_agreements,
    out,
    parse_date,
    print_json,
    read_input,
)
from safehaven.cli.engine import EngineOpt, SparkMasterOpt, batch_engine
from safehaven.domain.decision import Outcome, decide
from safehaven.domain.request import RequestFormatError, parse_request
from safehaven.service.clock import utcnow


def link_command(
    register: Path = typer.Option(None, "--register", help="Register file (default: workspace)."),
    requests: Path = typer.Option(..., "--requests", help="Requests, JSON lines (format v1)."),
    out_file: Path = typer.Option(..., "--out", help="CSV: request_id,status,score,record_id."),
    model: Path = typer.Option(None, "--model", help="Model JSON (default: workspace model)."),
    engine: str = EngineOpt,
    spark_master: str = SparkMasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Link a whole request file against a register with Splink (DuckDB or Spark)."""
    from safehaven.matching.batch import RequestFileError, link, read_requests, requests_frame
    from safehaven.matching.model import load_model
    from safehaven.matching.person import PERSON_SPEC
    from safehaven.matching.register import model_path, register_path, register_table

    register = register or register_path()
    model = model or model_path()
    for label, path in (("--register", register), ("--requests", requests), ("--model", model)):
        if not path.is_file():
            fail(f"{label}: {path}: no such file", as_json=as_json)
    start = time.perf_counter()
    try:
        reqs = read_requests(requests)
    except RequestFileError as exc:
        fail([f"{requests}: {p}" for p in exc.problems[:50]], as_json=as_json)
    reg = register_table(register, columns=["record_id", *PERSON_SPEC.base])
    with batch_engine(engine, spark_master, as_json=as_json) as spark:
        result = link(PERSON_SPEC, load_model(model), reg, requests_frame(reqs),
                      engine=engine, spark=spark)
    result.to_csv(out_file, index=False, quoting=csv.QUOTE_MINIMAL)
    counts = result["status"].value_counts().to_dict()
    seconds = time.perf_counter() - start
    if as_json:
        print_json({"out": str(out_file), "requests": len(result), "status": counts,
                    "seconds": round(seconds, 2)})
    else:
        out.print(f"linked {len(result):,} requests in {seconds:.1f}s: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                  + f" -> {out_file}")


def trace_command(
    request_file: str = typer.Argument(..., metavar="REQUEST.json", help="File, or - for stdin."),
    agreements_dir: Path = AgreementsOpt,
    database_url: str = DatabaseOpt,
    received: str = typer.Option(None, "--received", help="Date received (default: today)."),
    as_json: bool = JsonOpt,
) -> None:
    """Decide one request and, if it may proceed, match it and print the permitted fields.

    A refused request is never matched.  A request that needs review is matched (so the
    reviewer can see whether anyone was found) but nothing is released until approved.
    """
    import psycopg

    from safehaven.matching.online import load_online
    from safehaven.service import settings
    from safehaven.service.requests import cap_used
    from safehaven.store.db import open_store, session_factory, transaction

    raw = read_input(request_file, label="REQUEST.json", as_json=as_json)
    try:
        request = parse_request(raw)
    except RequestFormatError as exc:
        fail(exc.problems, as_json=as_json)
    agreements = load_agreements(agreements_dir, as_json=as_json)
    received_on = parse_date(received, label="--received", as_json=as_json) or utcnow().date()
    factory = session_factory(open_store(database_url))
    with transaction(factory) as session:
        firewall_on = settings.firewall_enabled(session)
        used = cap_used(session, request.agreement, received_on.strftime("%Y-%m"))
    decision = decide(request, agreements, received_on=received_on, firewall_on=firewall_on,
                      cap_usage=used)
    result: dict[str, object] = {"request_id": request.request_id,
                                 "outcome": decision.outcome.value}
    if decision.outcome is Outcome.REFUSED:
        result["reasons"] = [r.reason for r in decision.failed]
        _emit(result, as_json)
        raise typer.Exit(1)
    try:
        matcher = load_online()
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        fail(str(exc), as_json=as_json)
    except psycopg.Error as exc:  # a PostgreSQL index that cannot be reached
        fail(f"register index: {str(exc).splitlines()[0] if str(exc) else exc!r}",
             as_json=as_json)
    match = matcher.match(request.subject)
    result["status"] = match.status
    result["score"] = round(match.score, 6)
    if decision.outcome is Outcome.APPROVED:
        result["released"] = matcher.record(match, decision.permitted_fields)
    else:
        result["released"] = {}
        result["note"] = "needs review: nothing is released until a reviewer approves"
    _emit(result, as_json)


def _emit(result: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    for key, value in result.items():
        if isinstance(value, dict):
            out.print(f"{key}:")
            for k, v in value.items():
                out.print(f"  {k}: {v}")
        elif isinstance(value, list):
            out.print(f"{key}:")
            for v in value:
                out.print(f"  - {v}")
        else:
            out.print(f"{key}: {value}")
    sys.stdout.flush()
