"""The HTML report: escaped, self-contained, charts that never reveal suppressed cells."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from safehaven.cli import app
from safehaven.web.charts import stacked_bars
from safehaven.web.report_html import render_report_html


def _report(
    received: int | str, disclosed: int | str, agreement: str = "nhs-police-tracing"
) -> dict:
    row = {
        "agreement": agreement,
        "period": "2017",
        "received": received,
        "refused_by_engine": 0,
        "sent_to_review": received,
        "refused_by_reviewer": 0,
        "approved": received,
        "matched": received,
        "ambiguous": 0,
        "no_match": 0,
        "disclosed": disclosed,
        "new_information": disclosed,
        "already_known": 0,
        "notified": 0,
        "exempted": 0,
        "pending": 0,
        "refused_by_rule": {},
        "ratios": {"disclosed_share": None},
    }
    return {
        "query": {"agreement": None, "from": "2017-01-01", "to": "2017-12-31", "period": "year"},
        "public": True,
        "rows": [row],
        "totals": [{k: v for k, v in row.items() if k != "period"}],
    }


def test_html_has_chart_table_and_status_markers():
    html = render_report_html(_report(40, 25, "nhs-digital-home-office-2017"))
    assert html.count("<svg") == 1 and 'class="bar"' in html
    assert "Requests received" in html and ">40<" in html
    assert 'class="marker"' in html and "in_force (2017-01-01)" in html
    police = render_report_html(_report(40, 25))
    assert 'class="marker"' not in police  # its only change (2013) is outside the range


def test_suppressed_cells_are_not_drawn():
    html = render_report_html(_report(40, "<10"))
    assert "&lt;10" in html
    assert "Disclosed, new information: " not in html  # no bar for a suppressed count


def test_agreement_names_are_escaped():
    report = _report(12, 12)
    report["totals"][0]["agreement"] = "<script>alert(1)</script>"
    html = render_report_html(report)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_chart_geometry_is_proportional():
    chart = stacked_bars(["a", "b"], {"a": {"refused": 10}, "b": {"refused": 5}}, [], title="t")
    heights = [b.height for b in chart.bars]
    assert len(heights) == 2 and abs(heights[0] - 2 * heights[1]) < 1e-9


def test_report_command_formats(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFEHAVEN_HOME", str(tmp_path))
    runner = CliRunner()
    demo = runner.invoke(
        app, ["demo", "--no-serve", "--json", "--people", "2000", "--scale", "0.01"]
    )
    assert demo.exit_code == 0, demo.output
    replayed = json.loads(demo.stdout)["replay"]["requests"]
    js = runner.invoke(app, ["report", "--format", "json", "--internal"])
    assert js.exit_code == 0
    data = json.loads(js.stdout)
    assert sum(t["received"] for t in data["totals"]) == replayed > 0
    csv_out = runner.invoke(app, ["report", "--format", "csv", "--period", "quarter"])
    assert csv_out.exit_code == 0 and csv_out.stdout.startswith("agreement,period,")
    html = runner.invoke(
        app, ["report", "--format", "html", "--agreement", "nhs-digital-home-office-2017"]
    )
    assert html.exit_code == 0 and "<svg" in html.stdout
    assert runner.invoke(app, ["report", "--format", "pdf"]).exit_code == 2
    assert (
        runner.invoke(app, ["report", "--from", "2018-01-01", "--to", "2017-01-01"]).exit_code == 2
    )
