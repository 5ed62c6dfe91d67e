"""Aggregate releases: decide, tabulate, suppress, and put the release on the ledger.

Counts are derived from the controller's data here, at the edge, and only the protected
table leaves: every cell is either 0, at least the agreement's minimum, or suppressed so
that it cannot be recovered from the margins.  The ledger records the release (who, under
which agreement, which breakdown, a hash of the published table) without any count that
was suppressed.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from safehaven.domain.canonical import content_hash
from safehaven.domain.decision import AgreementSet, Decision, Outcome, decide_aggregate
from safehaven.domain.disclosure_control import ProtectedTable, protect
from safehaven.domain.firewall import DEFAULT_POLICY, FirewallPolicy
from safehaven.domain.request import AggregateRequest
from safehaven.ledger import log as ledger_log
from safehaven.service.clock import as_utc
from safehaven.service.requests import (
    ENGINE_ACTOR,
    IdempotencyConflictError,
    NotFoundError,
    ReviewError,
)
from safehaven.service.settings import firewall_enabled
from safehaven.store.aggregates import AggregateReleaseRow, AggregateReviewRow
from safehaven.store.db import workspace_home

UK = {"GB", "UK", "BRITISH", "UNITED KINGDOM"}
REFUSED = {"REFUSED"}


def _area(postcode: Any) -> str:
    """Postcode district (outward code): an area, never a point."""
    if not isinstance(postcode, str) or not postcode.strip():
        return "unknown"
    text = postcode.strip().upper()
    return text.split()[0] if " " in text else text[:-3] or "unknown"


def _nationality_group(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return "not known"
    v = value.strip().upper()
    if v in REFUSED:
        return "refused"
    return "UK" if v in UK else "non-UK"


def _age_band(birthdate: Any, on: date) -> str:
    try:
        born = date.fromisoformat(str(birthdate))
    except ValueError:
        return "unknown"
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    low = min(years // 10 * 10, 80)
    return f"{low}+" if low == 80 else f"{low}-{low + 9}"


def dimension_values(data: pd.DataFrame, dimension: str, on: date) -> pd.Series:
    """Derive one breakdown from the controller's columns (postcode, nationality, ...)."""
    if dimension == "area":
        return data["postcode"].map(_area)
    if dimension == "nationality_group":
        return data["nationality"].map(_nationality_group)
    if dimension == "gender":
        return data["gender"].fillna("unknown").astype(str)
    if dimension == "age_band":
        return data["birthdate"].map(lambda b: _age_band(b, on))
    if dimension == "month":
        return data["registered_on"].astype(str).str.slice(0, 7)
    raise ValueError(f"dimensions: unknown dimension {dimension!r}")


@dataclass(frozen=True)
class AggregateResult:
    decision: Decision
    released: bool
    table: dict[str, Any] | None


def tabulate(
    data: pd.DataFrame, dimensions: list[str], on: date
) -> tuple[list[str], list[str], list[list[int]]]:
    """Counts by one or two dimensions, rows and columns in sorted order."""
    rows = dimension_values(data, dimensions[0], on)
    cols = (
        dimension_values(data, dimensions[1], on)
        if len(dimensions) > 1
        else pd.Series(["count"] * len(data), index=data.index)
    )
    counts = pd.crosstab(rows, cols)
    return (
        [str(r) for r in counts.index],
        [str(c) for c in counts.columns],
        [[int(v) for v in row] for row in counts.to_numpy()],
    )


def published_table(
    dimensions: list[str], row_labels: list[str], col_labels: list[str], table: ProtectedTable
) -> dict[str, Any]:
    def show(v: int | None) -> int | str:
        return "suppressed" if v is None else v

    m, n = table.rows, table.cols
    return {
        "dimensions": dimensions,
        "rows": [
            {
                "label": row_labels[i],
                "cells": {col_labels[j]: show(table.values[i][j]) for j in range(n)},
                "total": show(table.values[i][n]),
            }
            for i in range(m)
        ],
        "column_totals": {col_labels[j]: show(table.values[m][j]) for j in range(n)},
        "total": show(table.values[m][n]),
        "suppressed_cells": len(table.suppressed),
    }


def protected_table(
    request: AggregateRequest, decision: Decision, agreements: AgreementSet, data: pd.DataFrame
) -> dict[str, Any]:
    """The published form of the table a decision allows: counts by the permitted
    dimensions, every value 0, at least the agreement's minimum, or ``"suppressed"``.

    Raises ``KeyError`` naming the column when the dataset lacks one a breakdown needs.
    """
    agreement = agreements.get(request.agreement)
    assert agreement is not None
    terms = agreement.purpose_terms(request.purpose)
    assert terms is not None and terms.aggregates is not None
    dims = list(decision.permitted_fields)
    rows, cols, cells = tabulate(data, dims, request.made_on)
    protected = protect(cells or [[0]], terms.aggregates.min_cell)
    if not cells:
        rows, cols = ["(none)"], ["count"]
    return published_table(dims, rows, cols, protected)


#: A spreadsheet runs a cell that starts with one of these as a formula; labels come from
#: the controller's data, so such a label is written with a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_label(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def table_csv(table: Mapping[str, Any]) -> str:
    """The table as CSV: first dimension down, second across, margins last; a suppressed
    value is the word ``suppressed``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    cols = list(table["column_totals"])
    writer.writerow([table["dimensions"][0], *(_csv_label(c) for c in cols), "total"])
    for row in table["rows"]:
        writer.writerow([_csv_label(row["label"]), *(row["cells"][c] for c in cols),
                         row["total"]])
    writer.writerow(["total", *(table["column_totals"][c] for c in cols), table["total"]])
    return out.getvalue()


def read_dataset(path: Path) -> pd.DataFrame:
    """A controller's records for aggregates: CSV (every column as text) or Parquet."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def answer_aggregate(
    session: Session,
    request: AggregateRequest,
    agreements: AgreementSet,
    data: pd.DataFrame,
    *,
    received_at: datetime,
    reviewed_by: str | None = None,
    firewall: FirewallPolicy = DEFAULT_POLICY,
    firewall_on: bool | None = None,
) -> AggregateResult:
    """Decide and, if allowed, release a protected table; the outcome goes on the ledger.

    A purpose that needs review is released only with ``reviewed_by`` (the reviewer who
    approved it), which is recorded too.
    """
    if firewall_on is None:
        firewall_on = firewall_enabled(session)
    decision = decide_aggregate(
        request,
        agreements,
        received_on=as_utc(received_at).date(),
        firewall_on=firewall_on,
        firewall=firewall,
    )
    released = decision.outcome is Outcome.APPROVED or (
        decision.outcome is Outcome.NEEDS_REVIEW
        and reviewed_by is not None
        and decision.reviewers_required <= 1
    )
    table = protected_table(request, decision, agreements, data) if released else None
    ledger_log.append(
        session,
        {
            "type": "aggregate.release" if released else "aggregate.refusal",
            "requester": request.requester,
            "agreement": decision.agreement.to_dict() if decision.agreement else None,
            "purpose": request.purpose,
            "dimensions": request.dimensions,
            "outcome": decision.outcome.value,
            "refused_by": [r.id for r in decision.failed],
            "reviewed_by": reviewed_by,
            "firewall": "on" if firewall_on else "off",
            "table_sha256": content_hash(table) if table else None,
            "at": as_utc(received_at).isoformat(),
        },
    )
    return AggregateResult(decision, released, table)


# --- Stored releases (the HTTP API) -------------------------------------------------------

#: A controller's records for aggregates, by controller id (the agreement's
#: ``parties.controller.id``).
Datasets = Mapping[str, pd.DataFrame]

ReleaseState = Literal["refused", "in_review", "released"]


class DatasetDirectory(Mapping[str, pd.DataFrame]):
    """Each controller's records as ``<directory>/<controller>.parquet`` (or ``.csv``),
    read on first use and again whenever the file changes.  ``safehaven serve`` uses
    ``$SAFEHAVEN_HOME/datasets``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[Path, tuple[float, pd.DataFrame]] = {}

    def _path(self, controller: str) -> Path | None:
        if not _CONTROLLER.fullmatch(controller):
            return None
        for suffix in (".parquet", ".csv"):
            path = self.directory / f"{controller}{suffix}"
            if path.is_file():
                return path
        return None

    def __getitem__(self, controller: str) -> pd.DataFrame:
        path = self._path(controller)
        if path is None:
            raise KeyError(controller)
        mtime = path.stat().st_mtime
        cached = self._cache.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, read_dataset(path))
            self._cache[path] = cached
        return cached[1]

    def __iter__(self) -> Iterator[str]:
        if not self.directory.is_dir():
            return iter(())
        names = {p.stem for p in self.directory.iterdir()
                 if p.suffix in (".parquet", ".csv") and _CONTROLLER.fullmatch(p.stem)}
        return iter(sorted(names))

    def __len__(self) -> int:
        return sum(1 for _ in self)


_CONTROLLER = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")


def workspace_datasets() -> DatasetDirectory:
    return DatasetDirectory(workspace_home() / "datasets")


class DatasetUnavailableError(RuntimeError):
    """The decision allows a table but the controller's records cannot be tabulated."""


@dataclass(frozen=True)
class Submitted:
    row: AggregateReleaseRow
    created: bool


def aggregate_body(request: AggregateRequest) -> dict[str, Any]:
    return request.model_dump(mode="json", exclude_none=True)


def _state_for(outcome: Outcome) -> ReleaseState:
    return {
        Outcome.REFUSED: "refused",
        Outcome.NEEDS_REVIEW: "in_review",
        Outcome.APPROVED: "released",
    }[outcome]  # type: ignore[return-value]


def _entry(row: AggregateReleaseRow, kind: str, at: datetime, **extra: Any) -> dict[str, Any]:
    """A ledger entry about a release: ids, hashes and the breakdown, never a count."""
    return {
        "type": kind,
        "release": row.public_id,
        "requester": row.requester,
        "agreement": row.decision.get("agreement"),
        "purpose": row.purpose,
        "dimensions": row.dimensions,
        "outcome": row.decision["outcome"],
        "refused_by": row.decision["refused_by"],
        "firewall": row.decision["firewall"],
        "body_sha256": row.body_sha256,
        "table_sha256": row.table_sha256,
        **extra,
        "at": as_utc(at).isoformat(),
    }


def submit_aggregate(
    session: Session,
    request: AggregateRequest,
    agreements: AgreementSet,
    datasets: Datasets,
    *,
    received_at: datetime,
    firewall: FirewallPolicy = DEFAULT_POLICY,
    firewall_on: bool | None = None,
) -> Submitted:
    """Record, decide and (unless refused) tabulate an aggregate request, in the caller's
    transaction, with its ledger entry.

    A refusal never reads the controller's records.  A release that needs review has its
    protected table computed now and kept for the reviewers, so what they approve is
    exactly what is released (the ledger entry commits to its sha256).  Idempotent on
    ``(requester, request_id)``: the same body returns the stored row, a different one
    raises :class:`IdempotencyConflictError`.
    """
    body = aggregate_body(request)
    body_sha = content_hash(body)
    if request.request_id is not None:
        earlier = _replay(session, request, body_sha)
        if earlier is not None:
            return Submitted(earlier, created=False)
    if firewall_on is None:
        firewall_on = firewall_enabled(session)
    decision = decide_aggregate(
        request,
        agreements,
        received_on=as_utc(received_at).date(),
        firewall_on=firewall_on,
        firewall=firewall,
    )
    table = None
    if decision.outcome is not Outcome.REFUSED:
        agreement = agreements.get(request.agreement)
        assert agreement is not None
        controller = agreement.parties.controller.id
        try:
            data = datasets.get(controller)
        except (OSError, ValueError) as exc:
            raise DatasetUnavailableError(
                f"dataset: the records of {controller!r} cannot be read ({type(exc).__name__})"
            ) from None
        if data is None:
            raise DatasetUnavailableError(
                f"dataset: no records are loaded for the controller {controller!r}"
            )
        try:
            table = protected_table(request, decision, agreements, data)
        except KeyError as exc:
            raise DatasetUnavailableError(
                f"dataset: the records of {controller!r} have no column {exc} needed for "
                "this breakdown"
            ) from None
    state = _state_for(decision.outcome)
    row = AggregateReleaseRow(
        public_id=str(uuid.uuid4()),
        requester=request.requester,
        request_key=request.request_id,
        agreement_id=request.agreement,
        purpose=request.purpose,
        made_on=request.made_on,
        dimensions=list(request.dimensions),
        body=body,
        body_sha256=body_sha,
        received_at=received_at,
        state=state,
        decision=decision.to_dict(),
        protected_table=table,
        table_sha256=content_hash(table) if table is not None else None,
        updated_at=received_at,
    )
    row.reviews = []
    kind = {"refused": "aggregate.refusal", "in_review": "aggregate.held",
            "released": "aggregate.release"}[state]
    try:
        # A savepoint: on PostgreSQL a concurrent submit with the same key may commit
        # between the lookup above and this insert; the unique constraint then fires here
        # and the stored row is the answer.
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        earlier = _replay(session, request, body_sha) if request.request_id else None
        if earlier is None:
            raise
        return Submitted(earlier, created=False)
    ledger_log.append(session, _entry(
        row, kind, received_at, actor=ENGINE_ACTOR,
        reviewers_required=decision.reviewers_required, reviewed_by=[],
    ))
    session.flush()
    return Submitted(row, created=True)


def _replay(
    session: Session, request: AggregateRequest, body_sha: str
) -> AggregateReleaseRow | None:
    existing = session.execute(
        select(AggregateReleaseRow).where(
            AggregateReleaseRow.requester == request.requester,
            AggregateReleaseRow.request_key == request.request_id,
        )
    ).scalar_one_or_none()
    if existing is None:
        return None
    if existing.body_sha256 != body_sha:
        raise IdempotencyConflictError(
            f"request_id: {request.request_id!r} was already used for a different "
            "aggregate request"
        )
    return existing


def get_release(session: Session, public_id: str) -> AggregateReleaseRow:
    row = session.execute(
        select(AggregateReleaseRow).where(AggregateReleaseRow.public_id == public_id)
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"aggregate release {public_id!r} not found")
    return row


def approvals_needed(row: AggregateReleaseRow) -> int:
    if row.state != "in_review":
        return 0
    approvals = sum(1 for r in row.reviews if r.verdict == "approve")
    return max(0, int(row.decision["reviewers_required"]) - approvals)


def review_aggregate(
    session: Session,
    public_id: str,
    *,
    reviewer: str,
    verdict: Literal["approve", "refuse"],
    reason: str,
    at: datetime,
) -> AggregateReleaseRow:
    """One reviewer's verdict, with its written reason.  One refusal refuses; the release
    needs as many approvals from *different* reviewers as the agreement requires (two
    under four-eyes).  The approval that completes the review releases the table that was
    computed when the request was received.  Every verdict is a ledger entry, and so is
    the release or refusal it causes."""
    reason = reason.strip()
    if not reason:
        raise ReviewError("reason: a written reason is required for every review")
    if verdict not in ("approve", "refuse"):
        raise ReviewError("verdict: must be 'approve' or 'refuse'")
    row = session.execute(
        select(AggregateReleaseRow).where(AggregateReleaseRow.public_id == public_id)
        .with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"aggregate release {public_id!r} not found")
    if row.state != "in_review":
        raise ReviewError(f"aggregate release is {row.state}, not in review")
    if any(r.reviewer == reviewer for r in row.reviews):
        raise ReviewError(
            f"reviewer {reviewer!r} has already reviewed this release; a second approval "
            "must come from a different person"
        )
    row.reviews.append(AggregateReviewRow(release_id=row.id, reviewer=reviewer,
                                          verdict=verdict, reason=reason, reviewed_at=at))
    entries = [{
        "type": "aggregate.review", "release": row.public_id, "reviewer": reviewer,
        "verdict": verdict, "reason_sha256": content_hash(reason), "at": as_utc(at).isoformat(),
    }]
    reviewers = [r.reviewer for r in row.reviews]
    if verdict == "refuse":
        row.state = "refused"
        entries.append(_entry(row, "aggregate.refusal", at, actor=reviewer,
                              refused_by_reviewer=reviewer, reviewed_by=reviewers))
    elif approvals_needed(row) == 0:
        row.state = "released"
        entries.append(_entry(row, "aggregate.release", at, actor=reviewer,
                              reviewed_by=reviewers))
    row.updated_at = at
    ledger_log.append_many(session, entries)
    session.flush()
    return row


def release_view(row: AggregateReleaseRow, *, show_pending_table: bool = False) -> dict[str, Any]:
    """A release as JSON.  The table is shown once released (or, for reviewers, while it
    waits for them); a refusal has none."""
    shown = row.state == "released" or (show_pending_table and row.state == "in_review")
    return {
        "id": row.public_id,
        "request_id": row.request_key,
        "requester": row.requester,
        "agreement": row.agreement_id,
        "purpose": row.purpose,
        "made_on": row.made_on.isoformat(),
        "dimensions": list(row.dimensions),
        "received_at": as_utc(row.received_at).isoformat(),
        "state": row.state,
        "outcome": row.decision["outcome"],
        "released": row.state == "released",
        "approvals_needed": approvals_needed(row),
        "decision": row.decision,
        "table": row.protected_table if shown else None,
        "table_sha256": row.table_sha256 if shown else None,
    }


def review_view(row: AggregateReleaseRow) -> dict[str, Any]:
    """What a reviewer (or oversight) sees: the request as sent, the engine's reasons, the
    table that would be released, and every verdict with its reason."""
    return {
        **release_view(row, show_pending_table=True),
        "body": row.body,
        "reviews": [
            {"reviewer": r.reviewer, "verdict": r.verdict, "reason": r.reason,
             "at": as_utc(r.reviewed_at).isoformat()}
            for r in row.reviews
        ],
    }


def pending_releases(session: Session, *, limit: int) -> list[AggregateReleaseRow]:
    return list(session.execute(
        select(AggregateReleaseRow).where(AggregateReleaseRow.state == "in_review")
        .order_by(AggregateReleaseRow.received_at, AggregateReleaseRow.id).limit(limit)
    ).scalars())


def list_releases(
    session: Session, *, requester: str | None = None, state: str | None = None, limit: int
) -> list[AggregateReleaseRow]:
    query = select(AggregateReleaseRow).order_by(AggregateReleaseRow.id.desc()).limit(limit)
    if requester is not None:
        query = query.where(AggregateReleaseRow.requester == requester)
    if state:
        query = query.where(AggregateReleaseRow.state == state)
    return list(session.execute(query).scalars())


def outcome_counts(
    session: Session, *, start: date | None = None, end: date | None = None,
    agreement: str | None = None,
) -> list[dict[str, Any]]:
    """Requests for counts received from ``start`` to ``end`` (inclusive), by agreement and
    purpose and by what became of them; never anything from a table.

    These count agencies' requests for tables, not people, so they need no small-number
    suppression; what must not reach a public page is a table's contents (an unreleased
    table is the controller's data, and a released one went to one requester).  A refusal
    is the engine's (``refused_by_rules``, with the firewall's share in
    ``refused_by_firewall``) or a reviewer's.
    """
    query = select(AggregateReleaseRow.agreement_id, AggregateReleaseRow.purpose,
                   AggregateReleaseRow.state, AggregateReleaseRow.decision)
    if start is not None:
        query = query.where(
            AggregateReleaseRow.received_at >= datetime.combine(start, time.min, UTC))
    if end is not None:
        query = query.where(AggregateReleaseRow.received_at
                            < datetime.combine(end + timedelta(days=1), time.min, UTC))
    if agreement:
        query = query.where(AggregateReleaseRow.agreement_id == agreement)
    counts: dict[tuple[str, str], dict[str, Any]] = {}
    for agreement_id, purpose, state, decision in session.execute(query):
        c = counts.setdefault((agreement_id, purpose), {
            "agreement": agreement_id, "purpose": purpose, "received": 0, "released": 0,
            "refused_by_rules": 0, "refused_by_firewall": 0, "refused_by_reviewer": 0,
            "in_review": 0})
        c["received"] += 1
        if state == "refused":
            if decision["outcome"] == Outcome.REFUSED.value:
                c["refused_by_rules"] += 1
                if any(r.startswith("firewall.") for r in decision["refused_by"]):
                    c["refused_by_firewall"] += 1
            else:
                c["refused_by_reviewer"] += 1
        else:
            c[state] += 1
    return [counts[k] for k in sorted(counts)]
