"""``safehaven serve``: the HTTP API under uvicorn."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from safehaven.cli.common import AgreementsOpt, DatabaseOpt, err, fail, load_agreements
from safehaven.service.tracing import InMemoryRegister, Matcher, NoRegister


def load_register(path: Path | None) -> Matcher:
    """``--register FILE.jsonl``: a small demo register (request field names plus
    ``record_id``).  Without it: the workspace register and its trained model if both
    exist (``safehaven register import`` / ``train``), else nobody can be matched."""
    if path is None:
        from safehaven.matching.register import model_path, register_path
        from safehaven.service.register_matcher import WorkspaceRegister

        if register_path().is_file() and model_path().is_file():
            return WorkspaceRegister.load()
        err.print("warning: no register loaded; approved requests will end in no_match")
        return NoRegister()
    try:
        records = [json.loads(line) for line in path.read_text("utf-8").splitlines()
                   if line.strip()]
        return InMemoryRegister(records)
    except (OSError, ValueError) as exc:
        fail(f"--register: {path}: {exc}")


def serve_command(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    database_url: str = DatabaseOpt,
    agreements_dir: Path = AgreementsOpt,
    register: Path = typer.Option(
        None, "--register", help="Demo register: JSON lines of records to match against "
        "(default: the workspace register and model, if imported and trained)."),
    print_codes: bool = typer.Option(
        False, "--print-codes", help="Demo: print subject access codes instead of posting."),
    secure_cookies: bool = typer.Option(
        False, "--secure-cookies", help="Send session cookies over HTTPS only (production)."),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json)."""
    import uvicorn

    from safehaven.api.app import create_app
    from safehaven.api.context import ApiConfig
    from safehaven.store.db import open_store

    agreements = load_agreements(agreements_dir)
    matcher = load_register(register)
    engine = open_store(database_url)
    app = create_app(ApiConfig(engine=engine, agreements=agreements, matcher=matcher,
                               print_codes=print_codes, secure_cookies=secure_cookies))
    # access_log off: paths are harmless but query strings may not be; errors still log.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
