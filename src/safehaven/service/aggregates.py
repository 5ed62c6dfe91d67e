"""Aggregate releases: decide, tabulate, suppress, and put the release on the ledger.

Counts are derived from the controller's data here, at the edge, and only the protected
table leaves: every cell is either 0, at least the agreement's minimum, or suppressed so
that it cannot be recovered from the margins.  The ledger records the release (who, under
which agreement, which breakdown, a hash of the published table) without any count that
was suppressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from safehaven.domain.canonical import content_hash
from safehaven.domain.decision import AgreementSet, Decision, Outcome, decide_aggregate
from safehaven.domain.disclosure_control import ProtectedTable, protect
from safehaven.domain.firewall import DEFAULT_POLICY, FirewallPolicy
from safehaven.domain.request import AggregateRequest
from safehaven.ledger import log as ledger_log
from safehaven.service.clock import as_utc
from safehaven.service.settings import firewall_enabled

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
    table = None
    if released:
        agreement = agreements.get(request.agreement)
        assert agreement is not None
        terms = agreement.purpose_terms(request.purpose)
        assert terms is not None and terms.aggregates is not None
        rows, cols, cells = tabulate(data, list(decision.permitted_fields), request.made_on)
        protected = protect(cells or [[0]], terms.aggregates.min_cell)
        if not cells:
            rows, cols = ["(none)"], ["count"]
        table = published_table(list(decision.permitted_fields), rows, cols, protected)
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
