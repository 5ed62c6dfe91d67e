"""Shared CLI plumbing: reading inputs, printing JSON, failing cleanly.

A CLI user must never see a traceback for bad input: every expected failure becomes a
message naming the file or field, on stderr, with exit code 2 (1 is kept for "the check
ran and found problems").
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from safehaven.agreements import AgreementFileError, load_dir
from safehaven.domain.decision import AgreementSet

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

EXIT_INVALID = 2
EXIT_PROBLEMS = 1

JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON output.")
DatabaseOpt = typer.Option(
    None,
    "--database-url",
    envvar="SAFEHAVEN_DATABASE_URL",
    help="SQLAlchemy URL (default: SQLite in $SAFEHAVEN_HOME, ./.safehaven).",
)
AgreementsOpt = typer.Option(
    None,
    "--agreements",
    envvar="SAFEHAVEN_AGREEMENTS",
    help="Directory of agreement files (default: the bundled agreements).",
)


def fail(problems: list[str] | str, *, as_json: bool = False, code: int = EXIT_INVALID) -> NoReturn:
    items = [problems] if isinstance(problems, str) else problems
    if as_json:
        print(json.dumps({"error": True, "problems": items}, indent=2))
    else:
        for p in items:
            err.print(f"[bold red]error:[/] {p}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def read_input(path: str, *, label: str, as_json: bool = False) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.is_file():
        fail(f"{label}: {path}: no such file", as_json=as_json)
    try:
        return p.read_bytes()
    except OSError as exc:
        fail(f"{label}: {path}: cannot read ({exc.strerror})", as_json=as_json)


def load_agreements(directory: Path | None, *, as_json: bool = False) -> AgreementSet:
    try:
        return load_dir(directory)
    except AgreementFileError as exc:
        fail([f"{e.path}: {p}" for e in (exc, *exc.others) for p in e.problems], as_json=as_json)


def pin_agreements(factory: sessionmaker[Session], agreements: AgreementSet, *,
                   as_json: bool = False) -> None:
    """Refuse (exit 2, naming each) agreements whose text changed under the same version;
    record versions used for the first time (``service.agreement_versions``)."""
    from safehaven.service.agreement_versions import AgreementVersionError, pin
    from safehaven.service.clock import utcnow
    from safehaven.store.db import transaction

    try:
        with transaction(factory) as session:
            pin(session, agreements, at=utcnow())
    except AgreementVersionError as exc:
        fail([f"agreements: {p}" for p in exc.problems], as_json=as_json)


def parse_date(value: str | None, *, label: str, as_json: bool = False) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{label}: {value!r} is not a date in the format YYYY-MM-DD", as_json=as_json)
