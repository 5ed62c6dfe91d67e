"""``safehaven report``: transparency statistics as JSON, CSV or HTML; ``safehaven reports
rebuild``: recompute the daily rollup those statistics are read from."""

from __future__ import annotations

import sys
import time
from datetime import date

import typer

from safehaven.cli.common import (
    EXIT_PROBLEMS,
    DatabaseOpt,
    JsonOpt,
    fail,
    out,
    parse_date,
    print_json,
)
from safehaven.domain.statistics import Period
from safehaven.service.reports import ReportQuery, build_report, rebuild_rollup, report_csv
from safehaven.store.db import open_store, session_factory, transaction


def report_command(
    agreement: str = typer.Option(None, "--agreement", help="Agreement id (default: all)."),
    start: str = typer.Option(None, "--from", help="First day received (YYYY-MM-DD)."),
    end: str = typer.Option(None, "--to", help="Last day received (YYYY-MM-DD)."),
    period: str = typer.Option("month", "--period", help="month | quarter | year"),
    fmt: str = typer.Option("json", "--format", help="json | csv | html"),
    internal: bool = typer.Option(
        False, "--internal", help="Exact small counts (not for publication)."
    ),
    database_url: str = DatabaseOpt,
) -> None:
    """Requests received, refused (by rule), reviewed, matched, disclosed, new information."""
    if fmt not in ("json", "csv", "html"):
        fail(f"--format: must be json, csv or html, not {fmt!r}")
    if period not in {p.value for p in Period}:
        fail(f"--period: must be month, quarter or year, not {period!r}")
    lo = parse_date(start, label="--from") or date(2000, 1, 1)
    hi = parse_date(end, label="--to") or date(2100, 1, 1)
    if hi < lo:
        fail("--to: must not be before --from")
    q = ReportQuery(agreement=agreement, start=lo, end=hi, period=Period(period))
    factory = session_factory(open_store(database_url))
    with transaction(factory) as session:
        report = build_report(session, q, public=not internal)
    if fmt == "json":
        print_json(report)
    elif fmt == "csv":
        sys.stdout.write(report_csv(report))
    else:
        from safehaven.web.report_html import render_report_html

        sys.stdout.write(render_report_html(report))


app = typer.Typer(help="The transparency report's daily rollup: check or rebuild it.",
                  no_args_is_help=True)


@app.command("rebuild")
def rebuild_command(
    start: str = typer.Option(None, "--from", help="First day received (default: all)."),
    end: str = typer.Option(None, "--to", help="Last day received (default: all)."),
    check: bool = typer.Option(
        False, "--check", help="Compare only; write nothing; exit 1 if anything differs."),
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Recompute the report rollup from the stored requests; say what differed.

    For repair after a restore, a manual edit or a bug.  Writers wait while the stored
    requests are counted (40-80 s at 10 M requests on PostgreSQL for every day, about 4 s
    for one month with --from/--to); reports keep answering.
    """
    lo = parse_date(start, label="--from", as_json=as_json)
    hi = parse_date(end, label="--to", as_json=as_json)
    if lo is not None and hi is not None and hi < lo:
        fail("--to: must not be before --from", as_json=as_json)
    factory = session_factory(open_store(database_url))
    began = time.perf_counter()
    with factory() as session, session.begin():
        result = rebuild_rollup(session, lo, hi)
        if check:
            session.rollback()
    doc = {**result.as_dict(), "written": not check,
           "from": lo.isoformat() if lo else None, "to": hi.isoformat() if hi else None,
           "seconds": round(time.perf_counter() - began, 3)}
    if as_json:
        print_json(doc)
    else:
        verb = "checked" if check else "rebuilt"
        out.print(f"{verb} {result.agreement_days} agreement-days "
                  f"({result.refusal_rows} refusal rows) in {doc['seconds']} s; "
                  f"{result.changed_days} differed from the rollup"
                  + ("" if check or not result.changed_days else " and were corrected"))
    if check and result.changed_days:
        raise typer.Exit(EXIT_PROBLEMS)
