"""``safehaven agency add | revoke | list``: API credentials for requesting agencies.

A token is printed once, at creation; only its sha256 is stored, so a lost token is
revoked and replaced, never recovered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from safehaven.cli.common import (
    AgreementsOpt,
    DatabaseOpt,
    JsonOpt,
    fail,
    load_agreements,
    out,
    print_json,
)
from safehaven.service import accounts
from safehaven.service.clock import as_utc, utcnow
from safehaven.store.db import open_store, session_factory, transaction

app = typer.Typer(help="API tokens for requesting agencies.", no_args_is_help=True)


@app.command("add")
def add(
    agency: str = typer.Argument(..., help="Agency id as named in the agreements."),
    agreement: list[str] = typer.Option(
        None, "--agreement", help="Limit the token to this agreement (repeatable; default: "
        "every agreement the agency is a party to)."),
    label: str = typer.Option("", "--label", help="What the token is for."),
    agreements_dir: Path = AgreementsOpt,
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create a token; it is shown once."""
    agreements = load_agreements(agreements_dir, as_json=as_json)
    factory = session_factory(open_store(database_url))
    try:
        with transaction(factory) as session:
            token, row = accounts.create_agency_token(
                session, agreements, agency, scope=agreement or None, label=label, at=utcnow()
            )
            token_id, scope = row.id, list(row.agreements)
    except accounts.AccountError as exc:
        fail(str(exc), as_json=as_json)
    if as_json:
        print_json({"id": token_id, "agency": agency, "agreements": scope, "token": token})
        return
    out.print(f"token {token_id} for [bold]{agency}[/] (agreements: {', '.join(scope)}):")
    out.print(token, markup=False)
    out.print("Store it now: it is not shown again.")


@app.command("revoke")
def revoke(
    token_id: int = typer.Argument(..., metavar="ID"),
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Revoke a token at once (every later call with it gets 401)."""
    factory = session_factory(open_store(database_url))
    try:
        with transaction(factory) as session:
            row = accounts.revoke_agency_token(session, token_id, at=utcnow())
            agency = row.agency
    except accounts.AccountError as exc:
        fail(str(exc), as_json=as_json)
    if as_json:
        print_json({"id": token_id, "agency": agency, "revoked": True})
    else:
        out.print(f"token {token_id} of {agency} revoked")


@app.command("list")
def list_tokens(database_url: str = DatabaseOpt, as_json: bool = JsonOpt) -> None:
    """List tokens (prefix only), with scope and whether revoked."""
    factory = session_factory(open_store(database_url))
    with transaction(factory) as session:
        rows: list[dict[str, Any]] = [
            {"id": r.id, "agency": r.agency, "prefix": r.prefix, "agreements": r.agreements,
             "label": r.label, "created_at": as_utc(r.created_at).isoformat(),
             "revoked_at": as_utc(r.revoked_at).isoformat() if r.revoked_at else None}
            for r in accounts.list_agency_tokens(session)
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "agency", "prefix", "agreements", "label", "revoked")
    for r in rows:
        table.add_row(str(r["id"]), r["agency"], r["prefix"] + "…", ", ".join(r["agreements"]),
                      r["label"], r["revoked_at"] or "—")
    out.print(table)
