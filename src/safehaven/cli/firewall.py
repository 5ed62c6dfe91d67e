"""``safehaven firewall``: the controller's switch above all agreements."""

from __future__ import annotations

import typer
from rich.table import Table

from safehaven.cli.common import DatabaseOpt, JsonOpt, fail, out, print_json
from safehaven.domain.firewall import DEFAULT_POLICY
from safehaven.service import settings
from safehaven.store.db import open_store, session_factory, transaction

app = typer.Typer(help="Switch the firewall on or off, or show its state.", no_args_is_help=True)

ReasonOpt = typer.Option(..., "--reason", help="Why (kept on record with who and when).")
ActorOpt = typer.Option("controller", "--actor", help="Who is making the change.")


def _switch(
    enabled: bool, reason: str, actor: str, database_url: str | None, as_json: bool
) -> None:
    if not reason.strip():
        fail("--reason: a reason is required to change the firewall", as_json=as_json)
    factory = session_factory(open_store(database_url))
    with transaction(factory) as session:
        settings.set_firewall(session, enabled, actor=actor, reason=reason)
    _status(database_url, as_json)


def _status(database_url: str | None, as_json: bool) -> None:
    factory = session_factory(open_store(database_url))
    with transaction(factory) as session:
        enabled = settings.firewall_enabled(session)
        history = settings.firewall_history(session)
        if as_json:
            print_json(
                {
                    "firewall": "on" if enabled else "off",
                    "rules": [r.model_dump(mode="json") for r in DEFAULT_POLICY.rules],
                    "history": [
                        {
                            "value": h.value,
                            "actor": h.actor,
                            "reason": h.reason,
                            "at": h.at.isoformat(),
                        }
                        for h in history
                    ],
                }
            )
            return
        state = "[bold green]ON[/]" if enabled else "[bold red]OFF[/]"
        out.print(f"Firewall: {state}")
        for rule in DEFAULT_POLICY.rules:
            out.print(f"  {rule.id}: {rule.description}")
        if history:
            table = Table("when", "value", "who", "why", title="Changes")
            for h in history:
                table.add_row(h.at.isoformat(), h.value, h.actor, h.reason)
            out.print(table)


@app.command("on")
def on(
    reason: str = ReasonOpt,
    actor: str = ActorOpt,
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Switch the firewall on."""
    _switch(True, reason, actor, database_url, as_json)


@app.command("off")
def off(
    reason: str = ReasonOpt,
    actor: str = ActorOpt,
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Switch the firewall off (recorded with who and why)."""
    _switch(False, reason, actor, database_url, as_json)


@app.command("status")
def status(database_url: str = DatabaseOpt, as_json: bool = JsonOpt) -> None:
    """Show whether the firewall is on, its rules and its change history."""
    _status(database_url, as_json)
