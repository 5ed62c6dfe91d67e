"""The demo's printed figures, read back from the store through the report service.

Nothing here is computed from the stream or the parameters: every number is what
:func:`safehaven.service.reports.build_report` counts in the database the replay wrote,
i.e. exactly what the public transparency page would show (unsuppressed, because the
demo's operator is the controller).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from safehaven.demo.parameters import Parameters
from safehaven.domain.statistics import Period
from safehaven.service.reports import ReportQuery, build_report

TOTAL_FIELDS = ("received", "refused_by_engine", "sent_to_review", "refused_by_reviewer",
                "approved", "matched", "ambiguous", "no_match", "disclosed",
                "new_information", "already_known", "notified", "exempted", "pending")


@dataclass(frozen=True)
class Comparison:
    label: str
    simulated: float | None
    simulated_counts: str
    published: float
    published_counts: str
    source: str

    @property
    def difference_points(self) -> float | None:
        if self.simulated is None:
            return None
        return round((self.simulated - self.published) * 100, 1)


def totals(session: Session, start: date, end: date) -> dict[str, dict[str, Any]]:
    """Exact totals per agreement over the replay."""
    report = build_report(session, ReportQuery(None, start, end, Period.YEAR), public=False)
    return {t["agreement"]: t for t in report["totals"]}


def comparisons(session: Session, params: Parameters) -> list[Comparison]:
    out = []
    for pub in params.published:
        report = build_report(
            session, ReportQuery(pub.agreement, pub.start, pub.end, Period.YEAR), public=False
        )
        total = next((t for t in report["totals"] if t["agreement"] == pub.agreement), None)
        received = int(total["received"]) if total else 0
        num = int(total[pub.numerator]) if total else 0
        share = num / received if received else None
        out.append(Comparison(pub.label, share, f"{num:,} / {received:,}", pub.share,
                              pub.counts, pub.source))
    return out


def summary_dict(session: Session, params: Parameters) -> dict[str, Any]:
    return {
        "totals": totals(session, params.replay.start, params.replay.end),
        "published_vs_simulated": [
            {"label": c.label, "simulated": None if c.simulated is None
             else round(c.simulated, 4), "simulated_counts": c.simulated_counts,
             "published": c.published, "published_counts": c.published_counts,
             "difference_points": c.difference_points, "source": c.source}
            for c in comparisons(session, params)
        ],
    }
