"""``safehaven demo``: the seeds' timeline through the real decision engine and store.

Until the full replay exists (matching, ledger, reports), the demo runs the bundled
example requests (one per turning point of the seeds) under the firewall switched off
and on, and shows what each would have met.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from importlib import resources
from pathlib import Path

from rich.table import Table

from safehaven.agreements import load_dir
from safehaven.cli.common import DatabaseOpt, out
from safehaven.domain.decision import decide
from safehaven.domain.request import parse_request
from safehaven.service import requests as svc
from safehaven.store.db import open_store, session_factory, transaction


def example_files() -> list[Path]:
    directory = Path(str(resources.files("safehaven") / "examples"))
    return sorted(directory.glob("*.json"))


def demo_command(database_url: str = DatabaseOpt) -> None:
    """Run the seeds' example requests through the decision engine and the store."""
    agreements = load_dir()
    factory = session_factory(open_store(database_url))
    table = Table(
        "example",
        "made on",
        "firewall off",
        "firewall on",
        "refused by (firewall on)",
        title="The seeds' turning points, decided by safehaven",
    )
    stored = 0
    for path in example_files():
        request = parse_request(path.read_bytes())
        received = datetime.combine(request.made_on, time(12, 0), UTC)
        off = decide(request, agreements, received_on=received.date(), firewall_on=False)
        with transaction(factory) as session:
            result = svc.submit(
                session, request, agreements, received_at=received, firewall_on=True
            )
            stored += int(result.created)
        table.add_row(
            path.stem,
            request.made_on.isoformat(),
            off.outcome.value,
            result.outcome,
            ", ".join(result.decision["refused_by"]) or "—",
        )
    out.print(table)
    out.print(
        f"{stored} new request(s) stored and decided in the workspace database "
        "(firewall on). Explore: [bold]safehaven requests list[/], "
        "[bold]safehaven agreements show nhs-digital-home-office-2017 --on 2018-06-01[/], "
        "[bold]safehaven decide FILE --firewall off --explain[/]."
    )
    out.print("Example request files: " + json.dumps(str(example_files()[0].parent)))
