"""What every route needs: the store, the agreements, the matcher, the clock, the limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from safehaven.api.writer import GroupCommitter
from safehaven.api.writer_process import RemoteWriter
from safehaven.domain.decision import AgreementSet
from safehaven.service.aggregates import Datasets, workspace_datasets
from safehaven.service.clock import utcnow
from safehaven.service.tracing import Matcher, NoRegister
from safehaven.store.db import read_only_factory, session_factory

T = TypeVar("T")


@dataclass
class ApiConfig:
    engine: Engine
    agreements: AgreementSet
    matcher: Matcher = field(default_factory=NoRegister)
    clock: Callable[[], datetime] = utcnow
    #: Print subject access codes on stdout (the demo's "notification channel").
    print_codes: bool = False
    #: Send cookies only over HTTPS; off for loopback demos and tests.
    secure_cookies: bool = False
    max_body_bytes: int = 64 * 1024
    max_bulk_rows: int = 10_000
    max_bulk_bytes: int = 20 * 1024 * 1024
    #: Rows per group-commit unit in a bulk upload (see ``agencies._bulk_lines``).
    bulk_batch: int = 25
    ledger_key: Callable[[], Ed25519PrivateKey] | None = None
    #: Each controller's records for aggregate releases, by controller id.
    datasets: Datasets = field(default_factory=workspace_datasets)
    #: ``serve --workers N`` on SQLite: the writer process every write goes to.
    remote_writer: RemoteWriter | None = None
    factory: sessionmaker[Session] = field(init=False)
    #: Sessions for routes that only read: no write lock (see ``read_only_factory``).
    reader: sessionmaker[Session] = field(init=False)
    writer: GroupCommitter = field(init=False)

    def __post_init__(self) -> None:
        self.factory = session_factory(self.engine)
        self.reader = read_only_factory(self.engine)
        database = self.engine.url.database
        lock = (Path(f"{database}.writer-lock")
                if self.engine.dialect.name == "sqlite" and database
                and database != ":memory:" else None)
        self.writer = GroupCommitter(self.factory, lock_path=lock)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(session, cfg, *args)`` in the writer's transaction; return after commit.

        Why a function and its arguments rather than a closure: under ``serve --workers N``
        on SQLite the unit runs in the writer process (``api/writer_process.py``), with that
        process's own ``cfg``, so it must cross by reference: ``fn`` is a module-level
        function and ``args`` plain, picklable values.  Otherwise it runs in this process's
        group-commit writer thread.
        """
        if self.remote_writer is not None:
            return await self.remote_writer.call(fn, *args)
        return await self.writer.run_async(self.unit(fn, args))

    def unit(self, fn: Callable[..., T], args: tuple[Any, ...]) -> Callable[[Session], T]:
        """``fn`` and its arguments as a unit of this process's writer (here, or in the
        writer process for a unit a worker sent)."""
        return lambda session: fn(session, self, *args)


async def config(request: Request) -> ApiConfig:
    # ``async`` so FastAPI calls it on the event loop rather than in its thread pool.
    cfg: ApiConfig = request.app.state.config
    return cfg
