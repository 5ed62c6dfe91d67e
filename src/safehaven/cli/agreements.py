"""``safehaven agreements``: check and show agreement files."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from safehaven.agreements import bundled_dir, check_all
from safehaven.agreements.schema import agreement_schema, render
from safehaven.cli.common import (
    EXIT_PROBLEMS,
    JsonOpt,
    fail,
    load_agreements,
    out,
    parse_date,
    print_json,
)

app = typer.Typer(help="Check and inspect data-sharing agreements.", no_args_is_help=True)


@app.command("check")
def check(
    directory: Path = typer.Argument(None, help="Directory of agreement files (default: bundled)."),
    as_json: bool = JsonOpt,
) -> None:
    """Validate every agreement and register profile; exit 1 naming file and field."""
    directory = directory or bundled_dir()
    if not directory.is_dir():
        fail(f"DIR: {directory}: not a directory", as_json=as_json)
    loaded, profiles, errors = check_all(directory)
    if as_json:
        print_json(
            {
                "valid": [
                    {"file": str(path), "id": a.id, "version": a.version, "sha256": a.sha256}
                    for path, a in loaded
                ],
                "register_profiles": [p.controller for p in profiles],
                "invalid": [{"file": str(e.path), "problems": e.problems} for e in errors],
            }
        )
    else:
        for path, a in loaded:
            out.print(f"[green]ok[/]    {path.name}: {a.id} v{a.version}  sha256:{a.sha256}")
        for profile in profiles:
            out.print(f"[green]ok[/]    register profile: {profile.controller}")
        for e in errors:
            for p in e.problems:
                out.print(f"[red]error[/] {e.path}: {p}", soft_wrap=True)
        if not loaded and not errors:
            out.print(f"no agreement files (*.yaml) in {directory}")
    if errors:
        raise typer.Exit(EXIT_PROBLEMS)


@app.command("show")
def show(
    agreement_id: str = typer.Argument(..., metavar="ID"),
    on: str = typer.Option(None, "--on", help="Show the status in force on this date."),
    directory: Path = typer.Option(None, "--agreements", envvar="SAFEHAVEN_AGREEMENTS"),
    as_json: bool = JsonOpt,
) -> None:
    """Show an agreement, and its status and permitted purposes on a date."""
    agreements = load_agreements(directory, as_json=as_json)
    agreement = agreements.get(agreement_id)
    if agreement is None:
        fail(
            f"ID: no agreement {agreement_id!r}; loaded: {sorted(agreements.agreements)}",
            as_json=as_json,
        )
    day = parse_date(on, label="--on", as_json=as_json)
    status = agreement.status_on(day) if day else None
    if as_json:
        data = agreement.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        data["sha256"] = agreement.sha256
        if day is not None:
            data["on"] = {
                "date": day.isoformat(),
                "status": status.status.value if status else "not_yet_made",
                "purposes": sorted(agreement.purposes_on(day)),
            }
        print_json(data)
        return
    out.print(f"[bold]{agreement.title}[/]")
    out.print(f"{agreement.id} v{agreement.version}  sha256:{agreement.sha256}")
    out.print(
        f"register: {agreement.register_kind.value}; controller: "
        f"{agreement.parties.controller.name}; requesters: "
        + ", ".join(r.id for r in agreement.parties.requesters)
    )
    history = Table("date", "status", "purposes", "note", title="Status history")
    for change in agreement.status_history:
        history.add_row(
            change.date.isoformat(),
            change.status.value,
            ", ".join(change.purposes or []) or "—",
            change.note,
        )
    out.print(history)
    purposes = Table("purpose", "grounds", "review", "fields", title="Purposes")
    for p in agreement.purposes:
        purposes.add_row(
            p.id,
            ", ".join(g.value for g in p.required_grounds) or "—",
            p.review.value,
            ", ".join(sorted(agreement.permitted_fields(p.id))),
        )
    out.print(purposes)
    if day is not None:
        label = status.status.value if status else "not yet made"
        out.print(
            f"On {day.isoformat()}: [bold]{label}[/]; purposes permitted: "
            + (", ".join(sorted(agreement.purposes_on(day))) or "none")
        )


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of agreement files (generated from the model; for editors and CI)."""
    sys.stdout.write(render(agreement_schema()))
