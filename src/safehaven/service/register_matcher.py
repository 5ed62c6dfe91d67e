"""The workspace register (Splink-trained model, online index) behind the tracing seam.

An online matcher (in-memory or PostgreSQL-backed) answers with a score and a row; the
service wants a :class:`~safehaven.service.tracing.Found` in the request's field vocabulary.
The record carries every releasable field (through the register's allow-list, so never a
clinical column); :func:`safehaven.service.tracing.complete` then keeps only the fields the
decision permits.  ``nhs_number`` is in the record so the subject portal can link the
request to the person, and leaves only where the decision permits it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from safehaven.domain.request import Subject
from safehaven.matching.online import OnlineMatcher, load_online
from safehaven.matching.pg_index import IndexChangedError
from safehaven.matching.register import RELEASABLE, register_digest, register_path
from safehaven.service.tracing import Found

Freshness = Literal["current", "stale", "unknown"]


class WorkspaceRegister:
    def __init__(self, online: OnlineMatcher, register: Path | None = None) -> None:
        self.online = online
        self.register = register

    @classmethod
    def load(cls, register: Path | None = None, model: Path | None = None) -> WorkspaceRegister:
        """In-memory index from the register file, or the PostgreSQL index when
        ``SAFEHAVEN_REGISTER_INDEX_URL`` is set (``matching.online.load_online``)."""
        return cls(load_online(register, model), register)

    def freshness(self) -> Freshness:
        """Whether the matcher answers from the register now in the workspace.

        ``stale``: a ``register import`` has replaced the file since this process loaded
        it (in-memory) or since the PostgreSQL index was built, so traces would disclose
        from the old register until a restart or ``register index``.  ``unknown``: no
        register file on this host (allowed with the PostgreSQL index) or an index built
        before digests were recorded.  Reads the file only when it has changed.
        """
        path = self.register or register_path()
        if not path.is_file():  # before asking the index: nothing to compare with
            return "unknown"
        served = self.online.serves_register()
        if served is None:
            return "unknown"
        return "current" if register_digest(path) == served else "stale"

    def match(self, subject: Subject) -> Found:
        """Match, then read the record.  With the PostgreSQL index a rebuild can land
        between the two (the record lookup then refuses: :class:`IndexChangedError`);
        the request is matched once more against the new index rather than failed."""
        for attempt in (0, 1):
            result = self.online.match(subject)
            if result.status != "matched" or result.record_id is None:
                return Found(result.status, float(result.score))
            try:
                record = self.online.record(result, tuple(RELEASABLE))
            except IndexChangedError:
                if attempt:
                    raise
                continue
            return Found("matched", float(result.score), result.record_id,
                         {k: str(v) for k, v in record.items() if v is not None})
        raise AssertionError("unreachable")
