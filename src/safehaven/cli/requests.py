"""``safehaven decide | submit | requests | review``: one request at a time."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import typer
from rich.table import Table

from safehaven.cli.common import (
    AgreementsOpt,
    DatabaseOpt,
    JsonOpt,
    fail,
    load_agreements,
    out,
    parse_date,
    pin_agreements,
    print_json,
    read_input,
)
from safehaven.domain.decision import Decision, decide
from safehaven.domain.lifecycle import IllegalTransition
from safehaven.domain.request import RequestFormatError, parse_request
from safehaven.service import requests as svc
from safehaven.service.clock import utcnow
from safehaven.store.db import open_store, session_factory, transaction

app = typer.Typer(help="Inspect stored requests.", no_args_is_help=True)

ReceivedOpt = typer.Option(
    None, "--received", help="Date received (YYYY-MM-DD; default: today, UTC)."
)


def _print_rules(rules: list[dict[str, object]]) -> None:
    table = Table("", "rule", "reason", show_lines=False)
    for r in rules:
        mark = "[green]✓[/]" if r["passed"] else "[red]✗[/]"
        table.add_row(mark, str(r["id"]), str(r["reason"]))
    out.print(table)


def decide_command(
    request_file: str = typer.Argument(..., metavar="REQUEST.json", help="File, or - for stdin."),
    agreements_dir: Path = AgreementsOpt,
    firewall: str = typer.Option("on", "--firewall", help="on | off"),
    received: str = ReceivedOpt,
    explain: bool = typer.Option(False, "--explain", help="Also print a rule table to stderr."),
) -> None:
    """Decide a request without storing it; print the decision as JSON."""
    if firewall not in ("on", "off"):
        fail(f"--firewall: must be 'on' or 'off', not {firewall!r}", as_json=True)
    raw = read_input(request_file, label="REQUEST.json", as_json=True)
    try:
        request = parse_request(raw)
    except RequestFormatError as exc:
        fail(exc.problems, as_json=True)
    agreements = load_agreements(agreements_dir, as_json=True)
    received_on = parse_date(received, label="--received", as_json=True) or utcnow().date()
    decision: Decision = decide(
        request, agreements, received_on=received_on, firewall_on=firewall == "on"
    )
    print_json(decision.to_dict())
    if explain:
        _print_rules([r.to_dict() for r in decision.rules])


def submit_command(
    request_file: str = typer.Argument(..., metavar="REQUEST.json", help="File, or - for stdin."),
    agreements_dir: Path = AgreementsOpt,
    database_url: str = DatabaseOpt,
    received: str = ReceivedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Store and decide a request (durable before this command reports success)."""
    raw = read_input(request_file, label="REQUEST.json", as_json=as_json)
    try:
        request = parse_request(raw)
    except RequestFormatError as exc:
        fail(exc.problems, as_json=as_json)
    agreements = load_agreements(agreements_dir, as_json=as_json)
    day = parse_date(received, label="--received", as_json=as_json)
    received_at = datetime.combine(day, time(12, 0), UTC) if day else utcnow()
    factory = session_factory(open_store(database_url))
    pin_agreements(factory, agreements, as_json=as_json)
    try:
        with transaction(factory) as session:
            result = svc.submit(session, request, agreements, received_at=received_at)
    except svc.IdempotencyConflictError as exc:
        fail(str(exc), as_json=as_json, code=3)
    if as_json:
        print_json(
            {
                "id": result.public_id,
                "state": result.state,
                "created": result.created,
                "decision": result.decision,
            }
        )
        return
    out.print(
        f"request [bold]{result.public_id}[/]: {result.outcome} (state {result.state})"
        + ("" if result.created else " — already received, same body")
    )
    _print_rules(result.decision["rules"])


def review_command(
    public_id: str = typer.Argument(..., metavar="ID"),
    reviewer: str = typer.Option(..., "--reviewer"),
    verdict: str = typer.Option(..., "--verdict", help="approve | refuse"),
    reason: str = typer.Option(..., "--reason", help="Written reason (mandatory)."),
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record a reviewer's verdict on a request in review."""
    if verdict not in ("approve", "refuse"):
        fail(f"--verdict: must be 'approve' or 'refuse', not {verdict!r}", as_json=as_json)
    factory = session_factory(open_store(database_url))
    try:
        with transaction(factory) as session:
            state = svc.review(
                session,
                public_id,
                reviewer=reviewer,
                verdict=verdict,  # type: ignore[arg-type]
                reason=reason,
                at=utcnow(),
            )
    except svc.NotFoundError as exc:
        fail(f"ID: {exc}", as_json=as_json)
    except (svc.ReviewError, IllegalTransition) as exc:
        fail(str(exc), as_json=as_json, code=3)
    if as_json:
        print_json({"id": public_id, "state": state})
    else:
        out.print(f"request {public_id}: now {state}")


@app.command("show")
def show(
    public_id: str = typer.Argument(..., metavar="ID"),
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show a stored request's decision, reviews and lifecycle."""
    factory = session_factory(open_store(database_url))
    with transaction(factory) as session:
        try:
            row = svc.get_request(session, public_id)
        except svc.NotFoundError as exc:
            fail(f"ID: {exc}", as_json=as_json)
        view = svc.request_view(session, row)
    if as_json:
        print_json(view)
        return
    out.print(
        f"[bold]{view['id']}[/] {view['requester']} → {view['agreement']} "
        f"({view['purpose']}), made {view['made_on']}: [bold]{view['state']}[/]"
    )
    if view["decision"]:
        _print_rules(view["decision"]["rules"])
    history = Table("at", "from", "to", "event", "by", title="Lifecycle")
    for t in view["transitions"]:
        history.add_row(t["at"], t["from"] or "—", t["to"], t["event"], t["actor"])
    out.print(history)


@app.command("list")
def list_requests(
    state: str = typer.Option(None, "--state"),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List stored requests, newest first."""
    factory = session_factory(open_store(database_url))
    with transaction(factory) as session:
        rows = svc.list_requests(session, state=state, limit=limit)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "requester", "agreement", "purpose", "made on", "state")
    for r in rows:
        table.add_row(
            r["id"], r["requester"], r["agreement"], r["purpose"], r["made_on"], r["state"]
        )
    out.print(table)
