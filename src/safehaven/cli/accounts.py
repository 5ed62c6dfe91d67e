"""``safehaven reviewer | oversight add | disable | unlock | list``: accounts of people who
log in."""

from __future__ import annotations

import os

import typer
from rich.table import Table

from safehaven.cli.common import DatabaseOpt, JsonOpt, fail, out, print_json
from safehaven.service import accounts
from safehaven.service.clock import as_utc, utcnow
from safehaven.store.db import open_store, session_factory, transaction

PASSWORD_ENV = "SAFEHAVEN_PASSWORD"  # noqa: S105 - the name of a variable, not a secret


def make_app(role: str) -> typer.Typer:
    app = typer.Typer(help=f"{role.capitalize()} accounts (password login).",
                      no_args_is_help=True)

    @app.command("add")
    def add(
        username: str = typer.Argument(...),
        database_url: str = DatabaseOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Create an account; the password comes from $SAFEHAVEN_PASSWORD or a prompt."""
        password = os.environ.get(PASSWORD_ENV) or typer.prompt(
            "Password", hide_input=True, confirmation_prompt=True)
        factory = session_factory(open_store(database_url))
        try:
            with transaction(factory) as session:
                row = accounts.create_account(session, username, role, password, at=utcnow())
                account_id = row.id
        except accounts.AccountError as exc:
            fail(str(exc), as_json=as_json)
        if as_json:
            print_json({"id": account_id, "username": username, "role": role})
        else:
            out.print(f"{role} [bold]{username}[/] created")

    @app.command("disable")
    def disable(
        username: str = typer.Argument(...),
        database_url: str = DatabaseOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Disable an account and end its sessions."""
        factory = session_factory(open_store(database_url))
        try:
            with transaction(factory) as session:
                accounts.disable_account(session, username, at=utcnow(), role=role)
        except accounts.AccountError as exc:
            fail(str(exc), as_json=as_json)
        if as_json:
            print_json({"username": username, "disabled": True})
        else:
            out.print(f"{username} disabled")

    @app.command("unlock")
    def unlock(
        username: str = typer.Argument(...),
        database_url: str = DatabaseOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Lift a lockout after failed logins (check with the person first); on the ledger."""
        factory = session_factory(open_store(database_url))
        try:
            with transaction(factory) as session:
                accounts.unlock_account(session, username, actor="cli", at=utcnow(), role=role)
        except accounts.AccountError as exc:
            fail(str(exc), as_json=as_json)
        if as_json:
            print_json({"username": username, "locked": False})
        else:
            out.print(f"{username} unlocked")

    @app.command("list")
    def list_(database_url: str = DatabaseOpt, as_json: bool = JsonOpt) -> None:
        """List accounts of this role, with any lockout after failed logins: account-wide
        (``locked until``) and the number of client addresses locked out."""
        factory = session_factory(open_store(database_url))
        now = utcnow()
        with transaction(factory) as session:
            rows = [{"username": r.username, "disabled": r.disabled_at is not None,
                     "locked_until": (as_utc(r.locked_until).isoformat()
                                      if r.locked_until and as_utc(r.locked_until) > now
                                      else None),
                     "locked_addresses": accounts.locked_addresses(session, r.id, at=now)}
                    for r in accounts.list_accounts(session) if r.role == role]
        if as_json:
            print_json(rows)
            return
        table = Table("username", "disabled", "locked until", "addresses locked out")
        for r in rows:
            table.add_row(str(r["username"]), "yes" if r["disabled"] else "no",
                          str(r["locked_until"] or ""), str(r["locked_addresses"]))
        out.print(table)

    return app


reviewer_app = make_app("reviewer")
oversight_app = make_app("oversight")
