"""``safehaven aggregate``: counts under disclosure control, or a refusal explaining why."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, time
from pathlib import Path

import pandas as pd
import typer

from safehaven.cli.common import (
    AgreementsOpt,
    DatabaseOpt,
    fail,
    load_agreements,
    parse_date,
    pin_agreements,
    print_json,
    read_input,
)
from safehaven.domain.request import RequestFormatError, parse_aggregate_request
from safehaven.service.aggregates import answer_aggregate, read_dataset, table_csv
from safehaven.service.clock import utcnow
from safehaven.store.db import open_store, session_factory, transaction


def _load_data(path: Path | None) -> pd.DataFrame:
    if path is None:
        from safehaven.matching.register import register_path

        path = register_path()
        if not path.is_file():
            fail(
                "--data: no dataset given and the workspace has no register "
                "(safehaven register import FILE)"
            )
    if not path.is_file():
        fail(f"--data: {path}: no such file")
    try:
        return read_dataset(path)
    except (OSError, ValueError) as exc:
        fail(f"--data: {path}: cannot read ({exc})")


def aggregate_command(
    request_file: str = typer.Argument(..., metavar="REQUEST.json", help="File, or - for stdin."),
    data: Path = typer.Option(None, "--data", help="CSV or Parquet (default: the register)."),
    reviewed_by: str = typer.Option(
        None, "--reviewed-by", help="Reviewer approving a release that needs review."
    ),
    fmt: str = typer.Option("json", "--format", help="json | csv"),
    received: str = typer.Option(None, "--received", help="Date received (default: today)."),
    agreements_dir: Path = AgreementsOpt,
    database_url: str = DatabaseOpt,
) -> None:
    """Answer an aggregate request: decision, then the protected table if released."""
    if fmt not in ("json", "csv"):
        fail(f"--format: must be json or csv, not {fmt!r}")
    raw = read_input(request_file, label="REQUEST.json")
    try:
        request = parse_aggregate_request(raw)
    except RequestFormatError as exc:
        fail(exc.problems)
    agreements = load_agreements(agreements_dir)
    frame = _load_data(data)
    day = parse_date(received, label="--received")
    at = utcnow() if day is None else datetime.combine(day, time(12, 0), UTC)
    factory = session_factory(open_store(database_url))
    pin_agreements(factory, agreements)
    try:
        with transaction(factory) as session:
            result = answer_aggregate(
                session, request, agreements, frame, received_at=at, reviewed_by=reviewed_by
            )
    except KeyError as exc:
        fail(f"--data: the dataset has no column {exc} needed for this breakdown")
    if fmt == "csv" and result.table is not None:
        sys.stdout.write(table_csv(result.table))
        return
    print_json(
        {
            "decision": result.decision.to_dict(),
            "released": result.released,
            "table": result.table,
            "note": None
            if result.released
            else (
                "refused"
                if result.decision.outcome.value != "needs_review"
                else "held for review: re-run with --reviewed-by NAME"
                if result.decision.reviewers_required <= 1
                else "needs two different reviewers: submit it with POST /v1/aggregates "
                "and use the review queue"
            ),
        }
    )
