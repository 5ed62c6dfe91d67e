"""Transparency statistics: what is counted, and how small counts are protected.

The seeds' complaint is that nobody could say how many requests were made, how many were
refused and why, how many disclosed an address, and how many told the requester anything
it did not already know (DfE 2015-17: 1,051 records transferred, "nobody knows" how many
were news to the Home Office).  Each figure here has one definition, used by every report
format, so the CSV, the JSON and the public page cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

#: Public outputs show counts below this as "<10", as official statistics do.
SUPPRESSION_THRESHOLD = 10


class Period(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


def period_key(day: date, period: Period) -> str:
    if period is Period.MONTH:
        return f"{day.year:04d}-{day.month:02d}"
    if period is Period.QUARTER:
        return f"{day.year:04d}-Q{(day.month - 1) // 3 + 1}"
    return f"{day.year:04d}"


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the store knows about one request, reduced to the facts statistics need."""

    agreement: str
    received_on: date
    state: str
    outcome: str | None  # engine decision: refused | needs_review | approved
    failed_rules: tuple[str, ...]
    review_refused: bool
    reached_approval: bool
    match_status: str | None  # matched | ambiguous | no_match
    disclosed: bool
    new_information: bool | None
    notice: str | None  # notified | exempted


COUNT_FIELDS = (
    "received",
    "refused_by_engine",
    "sent_to_review",
    "refused_by_reviewer",
    "approved",
    "matched",
    "ambiguous",
    "no_match",
    "disclosed",
    "new_information",
    "already_known",
    "notified",
    "exempted",
    "pending",
)


@dataclass
class Counts:
    received: int = 0
    refused_by_engine: int = 0
    sent_to_review: int = 0
    refused_by_reviewer: int = 0
    approved: int = 0
    matched: int = 0
    ambiguous: int = 0
    no_match: int = 0
    disclosed: int = 0
    new_information: int = 0
    already_known: int = 0
    notified: int = 0
    exempted: int = 0
    pending: int = 0
    refused_by_rule: Counter[str] = field(default_factory=Counter)

    def add(self, f: RequestFacts) -> None:
        self.received += 1
        if f.outcome == "refused":
            self.refused_by_engine += 1
            self.refused_by_rule.update(f.failed_rules)
        elif f.outcome == "needs_review":
            self.sent_to_review += 1
        self.refused_by_reviewer += f.review_refused
        self.approved += f.reached_approval
        if f.match_status == "matched":
            self.matched += 1
        elif f.match_status == "ambiguous":
            self.ambiguous += 1
        elif f.match_status == "no_match":
            self.no_match += 1
        self.disclosed += f.disclosed
        if f.disclosed and f.new_information is True:
            self.new_information += 1
        elif f.disclosed and f.new_information is False:
            self.already_known += 1
        if f.notice == "notified":
            self.notified += 1
        elif f.notice == "exempted":
            self.exempted += 1
        self.pending += f.state in {
            "received",
            "decided",
            "in_review",
            "approved",
            "matched",
            "disclosed",
        }

    def ratios(self) -> dict[str, float | None]:
        def r(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return {
            "refused_share": r(self.refused_by_engine + self.refused_by_reviewer, self.received),
            "disclosed_share": r(self.disclosed, self.received),
            "matched_share_of_approved": r(self.matched, self.approved),
            "new_information_share_of_disclosed": r(self.new_information, self.disclosed),
            "exempted_share_of_disclosed": r(self.exempted, self.disclosed),
        }

    def as_dict(self, *, public: bool = False) -> dict[str, Any]:
        show = suppress if public else (lambda n: n)
        data: dict[str, Any] = {name: show(getattr(self, name)) for name in COUNT_FIELDS}
        data["refused_by_rule"] = {
            rule: show(n) for rule, n in sorted(self.refused_by_rule.items())
        }
        ratios = self.ratios()
        if public:
            # A ratio over a suppressed count would reveal it; publish only safe ones.
            ratios = {
                k: v if not _ratio_reveals_small(k, self) else None for k, v in ratios.items()
            }
        data["ratios"] = ratios
        return data


_RATIO_PARTS = {
    "refused_share": ("refused_by_engine", "received"),
    "disclosed_share": ("disclosed", "received"),
    "matched_share_of_approved": ("matched", "approved"),
    "new_information_share_of_disclosed": ("new_information", "disclosed"),
    "exempted_share_of_disclosed": ("exempted", "disclosed"),
}


def _ratio_reveals_small(name: str, counts: Counts) -> bool:
    parts = _RATIO_PARTS[name]
    values = [getattr(counts, p) for p in parts]
    if name == "refused_share":
        values.append(counts.refused_by_reviewer)
    return any(0 < v < SUPPRESSION_THRESHOLD for v in values)


def suppress(n: int) -> int | str:
    """Counts 1-9 become "<10" in public output; zero is not disclosive and stays 0."""
    return "<10" if 0 < n < SUPPRESSION_THRESHOLD else n


def tally(facts: Iterable[RequestFacts], period: Period) -> dict[tuple[str, str], Counts]:
    """Counts per (agreement, period key) by date received."""
    table: dict[tuple[str, str], Counts] = {}
    for f in facts:
        key = (f.agreement, period_key(f.received_on, period))
        counts = table.get(key)
        if counts is None:
            counts = table[key] = Counts()
        counts.add(f)
    return table
