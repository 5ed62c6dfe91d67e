"""``safehaven serve``: the HTTP API under uvicorn."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from safehaven.cli.common import (
    AgreementsOpt,
    DatabaseOpt,
    err,
    fail,
    load_agreements,
    pin_agreements,
)
from safehaven.service.tracing import InMemoryRegister, Matcher, NoRegister

if TYPE_CHECKING:
    from safehaven.api.context import ApiConfig


def load_register(path: Path | None) -> Matcher:
    """``--register FILE.jsonl``: a small demo register (request field names plus
    ``record_id``).  Without it: the workspace register and its trained model if both
    exist (``safehaven register import`` / ``train``), else nobody can be matched.  With
    ``SAFEHAVEN_REGISTER_INDEX_URL`` set the register is matched through its PostgreSQL
    index (``safehaven register index``) and the register file need not be on this host."""
    if path is None:
        from safehaven.matching.online import index_url
        from safehaven.matching.register import model_path, register_path
        from safehaven.service.register_matcher import WorkspaceRegister

        if (index_url() or register_path().is_file()) and model_path().is_file():
            found = WorkspaceRegister.load()
            if found.freshness() == "stale":
                err.print("warning: the PostgreSQL register index was built from an older "
                          "register than the workspace's; traces answer from the old one "
                          "until `safehaven register index` is run again")
            return found
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
    workers: int = typer.Option(
        1, "--workers", min=1, max=64,
        help="Server processes sharing the port (use the number of cores). Each loads the "
        "register and keeps its own rate-limit buckets; writes stay serialised."),
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json)."""
    import uvicorn

    from safehaven.api.server import HTTP_PROTOCOL
    from safehaven.store.db import open_store, resolve_url, session_factory

    settings: dict[str, Any] = {"database_url": resolve_url(database_url),
                "agreements_dir": str(agreements_dir) if agreements_dir else None,
                "register": str(register) if register else None,
                "print_codes": print_codes, "secure_cookies": secure_cookies}
    # Fail here, once, on a bad agreement or register file; and migrate before any worker
    # starts, so workers never race each other through Alembic.
    engine = open_store(settings["database_url"])
    pin_agreements(session_factory(engine), load_agreements(agreements_dir))
    engine.dispose()
    # access_log off: paths are harmless but query strings may not be; errors still log.
    if workers == 1:
        uvicorn.run(worker_app(settings), host=host, port=port, log_level=log_level,
                    access_log=False, http=HTTP_PROTOCOL)
        return
    # The workers watch this process: the pid is handed over rather than read with
    # ``getppid()`` in the worker, which would already be init's if this process died while
    # the worker was still starting.
    settings["supervisor_pid"] = os.getpid()
    writer = None
    if str(settings["database_url"]).startswith("sqlite"):
        # Every write in one process of its own (see ``api/writer_process.py``); on
        # PostgreSQL each worker writes, and row locks let them proceed side by side.
        from safehaven.api.writer_process import WriterProcess

        writer = WriterProcess(settings)
        settings["writer"] = {"address": writer.address, "key": writer.key.hex()}
    os.environ[SETTINGS_ENV] = json.dumps(settings)
    try:
        uvicorn.run("safehaven.cli.serve:worker_app", factory=True, workers=workers,
                    host=host, port=port, log_level=log_level, access_log=False,
                    http=HTTP_PROTOCOL)
    finally:
        # After the workers: they finish their requests, which may still need to write.
        if writer is not None:
            writer.stop()


#: How ``serve --workers N`` hands its options to the worker processes uvicorn starts.
SETTINGS_ENV = "SAFEHAVEN_SERVE_SETTINGS"
#: How long a worker whose supervisor died gets to finish its requests before it exits.
ORPHAN_GRACE_SECONDS = 10.0


def watch_supervisor(supervisor: int, *, every: float = 1.0,
                     stop_at_once: bool = True) -> threading.Thread:
    """Shut this worker down if the ``serve --workers`` process that started it dies.

    Why: uvicorn's supervisor restarts and stops its workers, but if it is killed (OOM
    killer, ``kill -9``) the workers are re-parented and keep the port, and each one's
    health-check thread spins on the closed pipe (seen here at 10–30 % of a core each), so
    a restarted ``serve`` cannot bind and the orphans keep answering with no supervisor.
    A worker that sees its parent change stops like on ``SIGTERM`` (finishing requests in
    flight; every acknowledged request is already committed) and exits after a grace
    period if it has not.  A worker started after its supervisor died stops at once.
    ``stop_at_once=False`` (the writer process) skips the ``SIGTERM`` and only exits after
    the grace period: the workers may still be writing until then.
    """
    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(every)
        if stop_at_once:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_SECONDS)
        os._exit(1)

    thread = threading.Thread(target=watch, name="safehaven-supervisor-watch", daemon=True)
    thread.start()
    return thread


def build_config(settings: dict[str, Any]) -> ApiConfig:
    """One server process's configuration (a worker's, or the writer process's)."""
    from safehaven.api.context import ApiConfig
    from safehaven.store.db import open_store

    agreements_dir = settings["agreements_dir"]
    register = settings["register"]
    agreements = load_agreements(Path(agreements_dir) if agreements_dir else None)
    matcher = load_register(Path(register) if register else None)
    engine = open_store(settings["database_url"], migrate=False)
    return ApiConfig(engine=engine, agreements=agreements, matcher=matcher,
                     print_codes=bool(settings["print_codes"]),
                     secure_cookies=bool(settings["secure_cookies"]))


def worker_app(settings: dict[str, Any] | None = None) -> Any:
    """Build one server process's app (uvicorn calls this in each worker)."""
    from safehaven.api.app import create_app
    from safehaven.api.writer_process import RemoteWriter

    if settings is None:  # a worker of ``serve --workers N``
        settings = json.loads(os.environ[SETTINGS_ENV])
        watch_supervisor(int(settings["supervisor_pid"]))
    cfg = build_config(settings)
    if settings.get("writer"):
        cfg.remote_writer = RemoteWriter(settings["writer"]["address"],
                                         bytes.fromhex(settings["writer"]["key"]))
        cfg.remote_writer.wait_ready()
    return create_app(cfg)
