"""``safehaven demo``: the seeds' 2016-2018 timeline replayed through the real pipeline.

A synthetic register is generated and trained on, the bundled agreements are loaded, and
a request stream built from the documented parameters (``safehaven/demo/parameters.yaml``)
is replayed through submit → decide → review → match → disclose → notify, each step on the
ledger.  Controllers' synthetic records are written to ``$SAFEHAVEN_HOME/datasets`` and a
few requests for counts are replayed after the stream, with the firewall back on
(``safehaven/demo/aggregates.py``).  The printed figures are read back from the store by the
report service.  Then the web interface is served (unless ``--no-serve``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from safehaven.cli.common import DatabaseOpt, JsonOpt, fail, out, print_json
from safehaven.store.db import resolve_url, workspace_home

DEMO_MARKER = "demo.replay"
DEMO_PASSWORD = "safehaven-demo-{name}"  # noqa: S105 - printed demo logins, synthetic data
FIREWALL_OFF_REASON = (
    "Demo: replaying 2016-2018 as it happened; no firewall protected these registers then."
)
FIREWALL_ON_REASON = "Demo: replay finished; the firewall protects the live service again."


def _fast_sqlite(engine: Engine) -> None:
    """The replay is a bulk load of synthetic history with no client awaiting an
    acknowledgement, so SQLite need not fsync every commit; the server that follows opens
    its own engine with the store's normal, durable settings."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA cache_size=-200000")
        cursor.close()

    engine.dispose()


def _fresh_workspace(database_url: str | None, *, as_json: bool) -> None:
    """Start from an empty store; a previous demo's store is replaced, anything else kept."""
    from safehaven.store.db import open_store
    from safehaven.store.models import RequestRow, SettingRow

    url = resolve_url(database_url)
    engine = open_store(database_url)
    with Session(engine) as session:
        count = session.execute(select(func.count()).select_from(RequestRow)).scalar_one()
        marked = session.get(SettingRow, DEMO_MARKER) is not None
    engine.dispose()
    if count == 0:
        return
    if not marked:
        fail(f"the workspace store ({url}) already holds {count} request(s) that the demo did "
             "not make; run the demo in a fresh workspace, e.g. "
             "SAFEHAVEN_HOME=/tmp/safehaven-demo safehaven demo", as_json=as_json)
    if not url.startswith("sqlite:///"):
        fail("the demo can only replace a previous demo store on SQLite; drop the database "
             "first", as_json=as_json)
    path = Path(url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _progress(as_json: bool) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), disable=as_json)


def _scaled(params: Any, scale: float) -> Any:
    if scale == 1.0:
        return params
    data = params.model_dump(by_alias=True)
    for stream in data["streams"]:
        for arrival in stream["arrivals"]:
            arrival["per_month"] = arrival["per_month"] * scale
    return type(params).model_validate(data)


def run_replay(factory: sessionmaker[Session], params: Any, agreements: Any, matchers: Any,
               items: list[Any], *, firewall_on: bool, progress: Progress,
               label: str) -> Any:
    from safehaven.demo.runner import Replay
    from safehaven.service.settings import set_firewall

    with factory() as session, session.begin():
        set_firewall(session, firewall_on, actor="demo",
                     reason=FIREWALL_ON_REASON if firewall_on else FIREWALL_OFF_REASON)
    task = progress.add_task(label, total=len(items))
    result = Replay(factory, params, agreements, matchers, firewall_on=firewall_on).run(
        items, progress=lambda n: progress.advance(task, n))
    return result


def _accounts(factory: sessionmaker[Session], reviewers: list[str]) -> dict[str, str]:
    from safehaven.service.accounts import create_account
    from safehaven.service.clock import utcnow

    made = {}
    with factory() as session, session.begin():
        for name in [*reviewers, "oversight"]:
            password = DEMO_PASSWORD.format(name=name)
            create_account(session, name, "oversight" if name == "oversight" else "reviewer",
                           password, at=utcnow())
            made[name] = password
    return made


SHORT = {
    "hscic-home-office-2016-practice": "NHS→HO 2016 practice",
    "nhs-digital-home-office-2017": "NHS→HO MoU 2017",
    "dfe-home-office-2016": "DfE→HO NPD",
    "nhs-police-tracing": "NHS→police",
    "home-office-status-checks": "status checks",
    "gla-home-office-outreach-map": "GLA→HO map",
    "dfe-school-census-statistics": "DfE→ONS stats",
    "gla-outreach-service-planning": "GLA→boroughs",
}


def _totals_table(summary: dict[str, Any]) -> Table:
    table = Table(title="Replay 2016-01 … 2018-12, counted from the store")
    cols = [("received", "asked"), ("refused_by_engine", "refused"),
            ("refused_by_reviewer", "rev.refused"), ("disclosed", "disclosed"),
            ("new_information", "new info"), ("notified", "told"), ("exempted", "exempt"),
            ("pending", "open")]
    table.add_column("agreement")
    for _, label in cols:
        table.add_column(label, justify="right")
    for agreement, t in summary["totals"].items():
        table.add_row(SHORT.get(agreement, agreement), *(f"{t[k]:,}" for k, _ in cols))
    return table


def _published_table(summary: dict[str, Any]) -> Table:
    table = Table(title="Published figures beside the simulated ones")
    for name in ("figure", "published", "simulated", "diff"):
        table.add_column(name, justify="left" if name == "figure" else "right")
    for c in summary["published_vs_simulated"]:
        sim = "—" if c["simulated"] is None else (
            f"{c['simulated'] * 100:.1f} % ({c['simulated_counts']})")
        diff = "—" if c["difference_points"] is None else f"{c['difference_points']:+.1f} pts"
        table.add_row(c["label"], f"{c['published'] * 100:.1f} % ({c['published_counts']})",
                      sim, diff)
    return table


def _aggregates_table(outcomes: list[dict[str, Any]]) -> Table:
    table = Table(title="Requests for counts (aggregate releases), after the replay")
    for name in ("case", "agreement", "outcome", "reviewers", "hidden cells"):
        table.add_column(name, justify="right" if name == "hidden cells" else "left")
    for o in outcomes:
        outcome = o["state"].replace("_", " ")
        if any(r.startswith("firewall.") for r in o["refused_by"]):
            outcome += " by the firewall"
        elif o["refused_by"]:
            outcome += f": {', '.join(o['refused_by'])}"
        elif o["state"] == "refused" and o["reviewers"]:
            outcome += " by a reviewer"
        hidden = o["suppressed_cells"] if o["state"] in ("released", "in_review") else None
        table.add_row(o["case"], SHORT.get(o["agreement"], o["agreement"]), outcome,
                      ", ".join(o["reviewers"]) or "—", "—" if hidden is None else str(hidden))
    return table


def _difference(base: dict[str, Any], other: dict[str, Any], name: str) -> Table:
    table = Table(title=f"What if: {name} (same stream; difference = what-if − as it happened)")
    keys = ["received", "refused_by_engine", "disclosed", "new_information", "notified"]
    table.add_column("agreement")
    for k in keys:
        table.add_column({"refused_by_engine": "refused", "new_information": "new info"}.get(
            k, k), justify="right")
    for agreement in sorted(set(base) | set(other)):
        a, b = base.get(agreement, {}), other.get(agreement, {})
        table.add_row(SHORT.get(agreement, agreement), *(
            f"{b.get(k, 0):,} ({b.get(k, 0) - a.get(k, 0):+,})" for k in keys))
    return table


def demo_command(
    people: int = typer.Option(None, "--people", min=1000,
                               help="Synthetic register size (default from parameters.yaml)."),
    scale: float = typer.Option(1.0, "--scale", min=0.001, max=10.0,
                                help="Multiply every arrival rate (1.0 = the seeds' rates)."),
    what_if: str = typer.Option(None, "--what-if",
                                help="Also replay under firewall | narrowed | original."),
    serve: bool = typer.Option(True, "--serve/--no-serve",
                               help="Serve the web interface when done."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    parameters: Path = typer.Option(None, "--parameters", help="Another parameters file."),
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Replay the seeds' 2016-2018 timeline through the real pipeline and serve the UI."""
    from safehaven.agreements import load_dir
    from safehaven.demo.aggregates import DatasetConflictError, replay_aggregates, write_datasets
    from safehaven.demo.parameters import load_parameters
    from safehaven.demo.registers import build_registers
    from safehaven.demo.stream import generate
    from safehaven.demo.summary import summary_dict, totals
    from safehaven.demo.variants import WHAT_IFS, variant
    from safehaven.service.aggregates import DatasetDirectory
    from safehaven.service.clock import utcnow
    from safehaven.service.settings import set_firewall
    from safehaven.store.db import open_store, session_factory
    from safehaven.store.models import SettingRow

    if what_if is not None and what_if not in WHAT_IFS:
        fail(f"--what-if: must be one of {', '.join(WHAT_IFS)}, not {what_if!r}",
             as_json=as_json)
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        params = _scaled(load_parameters(parameters), scale)
    except (OSError, ValueError) as exc:
        fail(f"--parameters: {exc}", as_json=as_json)
    _fresh_workspace(database_url, as_json=as_json)
    datasets_dir = workspace_home() / "datasets"
    try:
        write_datasets(params, datasets_dir)
    except DatasetConflictError as exc:
        fail(str(exc), as_json=as_json)
    agreements = load_dir()
    engine = open_store(database_url)
    _fast_sqlite(engine)
    factory = session_factory(engine)
    with factory() as session, session.begin():
        session.add(SettingRow(key=DEMO_MARKER, value=json.dumps(
            {"seed": params.seed, "people": people or params.registers.people, "scale": scale}),
            updated_at=utcnow()))

    progress = _progress(as_json)
    with progress:
        setup = progress.add_task("register, model and stream", total=4)

        def step(name: str) -> None:
            progress.update(setup, description=name)
            progress.advance(setup)

        regs = build_registers(params, people=people or params.registers.people, on_step=step)
        progress.update(setup, description="generating the request stream")
        items = generate(params, regs.health, regs.education, regs.outsiders)
        progress.update(setup, description="register, model and stream ready", completed=4)
        result = run_replay(factory, params, agreements, regs.matchers, items,
                            firewall_on=False, progress=progress,
                            label="replaying 2016-2018 (as it happened)")
        with factory() as session, session.begin():
            set_firewall(session, True, actor="demo", reason=FIREWALL_ON_REASON)
        aggregate_outcomes = replay_aggregates(factory, params, agreements,
                                               DatasetDirectory(datasets_dir))
        accounts = _accounts(factory, params.reviewers)
        with factory() as session:
            summary = summary_dict(session, params)
        summary["aggregates"] = [o.as_dict() for o in aggregate_outcomes]
        other: dict[str, Any] | None = None
        if what_if is not None:
            home = workspace_home()
            path = home / f"whatif-{what_if}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            w_engine = open_store(f"sqlite:///{path}")
            _fast_sqlite(w_engine)
            w_factory = session_factory(w_engine)
            w_agreements, w_firewall = variant(what_if, agreements)
            run_replay(w_factory, params, w_agreements, regs.matchers, items,
                       firewall_on=w_firewall, progress=progress,
                       label=f"replaying under --what-if {what_if}")
            with w_factory() as session:
                other = totals(session, params.replay.start, params.replay.end)
            w_engine.dispose()
    engine.dispose()
    seconds = time.perf_counter() - started
    summary["replay"] = {**asdict(result), "seconds": round(result.seconds, 1),
                         "cpu_seconds": round(result.cpu_seconds, 1),
                         "total_seconds": round(seconds, 1),
                         "total_cpu_seconds": round(time.process_time() - cpu_started, 1),
                         "people": len(regs.health)}
    if other is not None:
        summary["what_if"] = {"name": what_if, "totals": other}
    if as_json:
        print_json(summary)
    else:
        out.print(_totals_table(summary))
        out.print(_published_table(summary))
        out.print(_aggregates_table(summary["aggregates"]))
        if other is not None:
            out.print(_difference(summary["totals"], other, str(what_if)))
        out.print(f"{result.requests:,} requests replayed ({result.reviews:,} reviews, "
                  f"{result.left_in_review} still in review) in {result.seconds:.0f}s "
                  f"({result.cpu_seconds:.0f}s CPU); total {seconds:.0f}s. Register: "
                  f"{len(regs.health):,} synthetic people.")
    if not serve:
        if not as_json:
            out.print("Explore: [bold]safehaven report --format html --agreement "
                      "nhs-digital-home-office-2017 > report.html[/], [bold]safehaven ledger "
                      "verify[/], or run [bold]safehaven demo[/] without --no-serve.")
        return
    _serve(database_url, regs.matchers["health"], port, accounts)


def _serve(database_url: str | None, matcher: Any, port: int, accounts: dict[str, str]) -> None:
    import uvicorn

    from safehaven.agreements import load_dir
    from safehaven.api.app import create_app
    from safehaven.api.context import ApiConfig
    from safehaven.api.server import HTTP_PROTOCOL
    from safehaven.store.db import open_store
    from safehaven.web import pages

    base = f"http://127.0.0.1:{port}"
    out.print(f"\n[bold]Open {base}/[/] — where to click:")
    out.print(f"  • {base}/transparency   public transparency report with charts")
    out.print(f"  • {base}/agreements     agreements and their status history")
    out.print(f"  • {base}/ledger         ledger head and verification")
    out.print(f"  • {base}/review         reviewer desk: tracing requests and aggregate "
              "releases (log in as "
              + ", ".join(f"{n} / {p}" for n, p in accounts.items() if n != "oversight") + ")")
    if "oversight" in accounts:
        out.print(f"  • {base}/oversight      every aggregate release, read-only (log in as "
                  f"oversight / {accounts['oversight']})")
    out.print(f"  • {base}/portal         subject portal (access codes are printed here)")
    out.print("Press Ctrl+C to stop.")
    engine = open_store(database_url)
    app = create_app(ApiConfig(engine=engine, agreements=load_dir(), matcher=matcher,
                               print_codes=True))
    pages.install(app)  # no-op once create_app mounts the pages itself
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                http=HTTP_PROTOCOL)
