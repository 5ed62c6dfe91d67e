"""``safehaven report``: transparency statistics as JSON, CSV or HTML."""

from __future__ import annotations

import sys
from datetime import date

import typer

from safehaven.cli.common import DatabaseOpt, fail, parse_date, print_json
from safehaven.domain.statistics import Period
from safehaven.service.reports import ReportQuery, build_report, report_csv
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
