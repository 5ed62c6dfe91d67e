"""The workspace register as an online matcher: load once, answer many.

Two backends answer the same way (same scorer, same rule, same result): the in-memory index
built from the register file at start (:class:`RegisterMatcher`, the default) and the
PostgreSQL-resident index (:class:`PgRegisterMatcher`, chosen by setting
``SAFEHAVEN_REGISTER_INDEX_URL``) for a register larger than a worker's memory.
:func:`load_online` picks one, so the API and ``safehaven trace`` share the switch.

Only the matching columns and the releasable columns are ever read from the register
file; clinical columns stay on disk.  A match answers in the request's field vocabulary
(``address``, ``address-postalcode`` ...) through :data:`register.RELEASABLE`, so what
leaves is decided by the allow-list and the decision, never by what the file contains.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from safehaven.domain.request import Subject
from safehaven.matching.index import RegisterIndex
from safehaven.matching.model import load_model
from safehaven.matching.person import PERSON_SPEC
from safehaven.matching.register import (
    RELEASABLE,
    model_path,
    register_digest,
    register_path,
    released_fields,
)
from safehaven.matching.scorer import Matcher, MatchResult, Policy, Weights

if TYPE_CHECKING:
    from safehaven.matching.pg_index import PgMatcher

#: Set to a PostgreSQL URL to match against the index built there by
#: ``safehaven register index --backend postgres`` (same value as ``pg_index.URL_ENV``).
INDEX_URL_ENV = "SAFEHAVEN_REGISTER_INDEX_URL"
#: The schema the index was built in, when not the default ``register_index``.
INDEX_SCHEMA_ENV = "SAFEHAVEN_REGISTER_INDEX_SCHEMA"

RELEASABLE_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(
    c for cols in RELEASABLE.values() for c in cols))


def subject_values(subject: Subject | Mapping[str, Any]) -> dict[str, object]:
    """A request subject (PDS names) as the register's base column values."""
    s = (subject.model_dump(mode="json", by_alias=True) if isinstance(subject, Subject)
         else dict(subject))
    return {
        "nhs_number": s.get("nhs_number"),
        "family": s.get("family"),
        "given": s.get("given"),
        "gender": s.get("gender"),
        "birthdate": None if s.get("birthdate") is None else str(s["birthdate"]),
        "postcode": s.get("address-postalcode"),
        "previous_postcode": None,
    }


@dataclass
class RegisterMatcher:
    matcher: Matcher
    releasable: pa.Table
    build_seconds: float
    #: The register file this process loaded (``register_digest``), if loaded from one.
    loaded_sha256: str | None = None

    @classmethod
    def load(cls, register: Path | None = None, model: Path | None = None,
             policy: Policy | None = None) -> RegisterMatcher:
        start = time.perf_counter()
        register = register or register_path()
        model = model or model_path()
        if not register.is_file():
            raise FileNotFoundError(f"{register}: no register (run `safehaven register import`)")
        if not model.is_file():
            raise FileNotFoundError(f"{model}: no trained model (run `safehaven register train`)")
        cols = list(dict.fromkeys(["record_id", *PERSON_SPEC.base, *RELEASABLE_COLUMNS]))
        table = pq.read_table(register, columns=cols)
        index = RegisterIndex.from_arrow(PERSON_SPEC, table, "record_id")
        weights = Weights.from_settings(PERSON_SPEC, load_model(model))
        # Arrow, not pandas: a few bytes per value instead of a Python object per value.
        releasable = table.select(list(RELEASABLE_COLUMNS))
        return cls(Matcher(index, weights, policy), releasable,
                   time.perf_counter() - start, register_digest(register))

    def match(self, subject: Subject | Mapping[str, Any]) -> MatchResult:
        return self.matcher.match(subject_values(subject))

    def record(self, result: MatchResult, permitted: Iterable[str]) -> dict[str, Any]:
        """The permitted fields of the matched record; nothing unless uniquely matched."""
        if result.status != "matched" or result.row is None:
            return {}
        values = self.releasable.slice(result.row, 1).to_pylist()[0]
        return released_fields(values, tuple(permitted))

    def serves_register(self) -> str | None:
        """Digest of the register this matcher answers from (``None``: not known)."""
        return self.loaded_sha256


class OnlineMatcher(Protocol):
    """What the service needs from either backend."""

    def match(self, subject: Subject | Mapping[str, Any]) -> MatchResult: ...

    def record(self, result: MatchResult, permitted: Iterable[str]) -> dict[str, Any]: ...

    def serves_register(self) -> str | None: ...


def _load_weights(model: Path | None) -> Weights:
    model = model or model_path()
    if not model.is_file():
        raise FileNotFoundError(f"{model}: no trained model (run `safehaven register train`)")
    return Weights.from_settings(PERSON_SPEC, load_model(model))


@dataclass
class PgRegisterMatcher:
    """The register matched through its PostgreSQL index: this process holds only the model.

    The model file is still read locally (a few KB), exactly as the in-memory backend reads
    it, so retraining takes effect on restart for both.
    """

    matcher: PgMatcher
    build_seconds: float

    @classmethod
    def load(cls, url: str, model: Path | None = None, policy: Policy | None = None,
             schema: str | None = None) -> PgRegisterMatcher:
        """Connect to the index; refuse one that cannot release what the allow-list names."""
        from safehaven.matching.pg_index import IndexMismatchError, PgMatcher

        start = time.perf_counter()
        matcher = PgMatcher.connect(url, PERSON_SPEC, _load_weights(model), policy,
                                    schema or index_schema())
        missing = [c for c in RELEASABLE_COLUMNS if c not in matcher.index.releasable]
        if missing:
            matcher.close()
            raise IndexMismatchError(
                f"PostgreSQL register index lacks releasable columns {missing}: rebuild it "
                "with `safehaven register index --backend postgres`")
        return cls(matcher, time.perf_counter() - start)

    def match(self, subject: Subject | Mapping[str, Any]) -> MatchResult:
        return self.matcher.match(subject_values(subject))

    def record(self, result: MatchResult, permitted: Iterable[str]) -> dict[str, Any]:
        """The permitted fields of the matched record; nothing unless uniquely matched."""
        if result.status != "matched" or result.row is None or result.record_id is None:
            return {}
        values = self.matcher.index.releasable_row(result.row, result.record_id)
        return released_fields(values, tuple(permitted))

    def serves_register(self) -> str | None:
        """Digest of the register the index in place was built from (read each time: a
        rebuild swaps it under running workers)."""
        return self.matcher.index.register_sha256()

    def close(self) -> None:
        self.matcher.close()


def index_url() -> str | None:
    """The PostgreSQL candidate index URL if the operator chose that backend."""
    return os.environ.get(INDEX_URL_ENV) or None


def index_schema() -> str:
    """The schema holding the PostgreSQL index (``safehaven register index --schema``)."""
    return os.environ.get(INDEX_SCHEMA_ENV) or "register_index"


def load_online(register: Path | None = None, model: Path | None = None,
                policy: Policy | None = None) -> OnlineMatcher:
    """The PostgreSQL-backed matcher if ``SAFEHAVEN_REGISTER_INDEX_URL`` is set, else the
    in-memory one built from the register file."""
    url = index_url()
    if url:
        return PgRegisterMatcher.load(url, model, policy)
    return RegisterMatcher.load(register, model, policy)
