"""The ``safehaven`` command line (Typer + rich; ``--json`` for machines)."""

from __future__ import annotations

import typer

from safehaven.cli import accounts as accounts_cli
from safehaven.cli import agency, agreements, firewall, ledger, requests
from safehaven.cli import matching as matching_cli
from safehaven.cli import register as register_cli
from safehaven.cli import report as report_cli
from safehaven.cli.aggregate import aggregate_command
from safehaven.cli.backup import backup_command, restore_command
from safehaven.cli.demo import demo_command
from safehaven.cli.report import report_command
from safehaven.cli.serve import serve_command

app = typer.Typer(
    help="safehaven: agreements as code, a firewall, review, matching and a ledger between a "
    "register of people and the agencies that ask about them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(agreements.app, name="agreements")
app.add_typer(firewall.app, name="firewall")
app.add_typer(ledger.app, name="ledger")
app.add_typer(requests.app, name="requests")
app.command("decide")(requests.decide_command)
app.command("submit")(requests.submit_command)
app.command("review")(requests.review_command)
app.command("demo")(demo_command)
app.add_typer(agency.app, name="agency")
app.add_typer(accounts_cli.reviewer_app, name="reviewer")
app.add_typer(accounts_cli.oversight_app, name="oversight")
app.command("serve")(serve_command)
app.add_typer(register_cli.app, name="register")
app.command("link")(matching_cli.link_command)
app.command("trace")(matching_cli.trace_command)
app.command("report")(report_command)
app.add_typer(report_cli.app, name="reports")
app.command("aggregate")(aggregate_command)
app.command("backup")(backup_command)
app.command("restore")(restore_command)


def main() -> None:
    app()
