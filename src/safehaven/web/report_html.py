"""The public transparency report as one self-contained HTML page."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from safehaven.agreements import load_dir
from safehaven.domain.statistics import COUNT_FIELDS
from safehaven.web.charts import Chart, stacked_bars

_env = Environment(
    loader=PackageLoader("safehaven.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

LABELS = {
    "received": "Requests received",
    "refused_by_engine": "Refused by the rules",
    "sent_to_review": "Sent to a reviewer",
    "refused_by_reviewer": "Refused by a reviewer",
    "approved": "Approved",
    "matched": "Matched to one person",
    "ambiguous": "Ambiguous match (nothing disclosed)",
    "no_match": "No match",
    "disclosed": "Disclosed",
    "new_information": "Disclosures that gave new information",
    "already_known": "Disclosures of an address already known",
    "notified": "Subjects notified",
    "exempted": "Notification exempted",
    "pending": "Still in progress",
}


def _num(v: int | str) -> int:
    """Suppressed cells ("<10") are drawn as zero height: the chart must not reveal them."""
    return v if isinstance(v, int) else 0


def chart_for(report: dict[str, Any], agreement: str) -> Chart:
    rows = [r for r in report["rows"] if r["agreement"] == agreement]
    periods = [r["period"] for r in rows]
    values = {}
    for r in rows:
        disclosed = _num(r["disclosed"])
        new = _num(r["new_information"])
        known = _num(r["already_known"])
        values[r["period"]] = {
            "refused": _num(r["refused_by_engine"]) + _num(r["refused_by_reviewer"]),
            "no_disclosure": max(_num(r["approved"]) - disclosed, 0),
            "disclosed_known": known,
            "disclosed_new": new + max(disclosed - new - known, 0),
            "pending": _num(r["pending"]),
        }
    markers: list[tuple[str, str]] = []
    try:
        found = load_dir().get(agreement)
    except ValueError:
        found = None
    if found is not None:
        from safehaven.domain.statistics import Period, period_key

        period = Period(report["query"]["period"])
        markers = [
            (period_key(c.date, period), f"{c.status.value} ({c.date.isoformat()})")
            for c in found.status_history
        ]
    return stacked_bars(periods, values, markers, title=f"Requests and outcomes: {agreement}")


def render_report_html(report: dict[str, Any]) -> str:
    agreements = [t["agreement"] for t in report["totals"]]
    return _env.get_template("report.html").render(
        report=report,
        charts={a: chart_for(report, a) for a in agreements},
        fields=COUNT_FIELDS,
        labels=LABELS,
    )
