"""Report figures against counts computed independently from the stored lifecycle."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from safehaven.domain.statistics import Counts, Period, RequestFacts, suppress
from safehaven.service import requests as svc
from safehaven.service import settings
from safehaven.service.reports import ReportQuery, build_report, report_csv
from safehaven.store.db import transaction
from tests.builders import DFE_TRACE, NHS_DEPORT, POLICE, STATUS, body, req


def _populate(factory, agreements, n: int, seed: int) -> None:
    rnd = random.Random(seed)
    with transaction(factory) as s:
        settings.set_firewall(s, False, actor="t", reason="report test")
    for i in range(n):
        day = date(2017, 1, 1) + timedelta(days=rnd.randrange(0, 700))
        at = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
        base = rnd.choice([POLICE, STATUS, DFE_TRACE, NHS_DEPORT])
        changes = {"made_on": day.isoformat(), "request_id": f"r{i}"}
        if base is POLICE:
            changes["grounds__offence_date"] = (
                day - timedelta(days=rnd.choice([30, 2000]))
            ).isoformat()
        if rnd.random() < 0.3:
            changes["subject__known_address"] = {"postalcode": "LS1 4AP"}
        with transaction(factory) as s:
            result = svc.submit(s, req(body(base, **changes)), agreements, received_at=at)
        pid, state = result.public_id, result.state
        with transaction(factory) as s:
            while state == "in_review":
                verdict = "refuse" if rnd.random() < 0.2 else "approve"
                reviewer = f"rev{rnd.randrange(1000)}"
                if any(r.reviewer == reviewer for r in svc.get_request(s, pid).reviews):
                    continue
                state = svc.review(s, pid, reviewer=reviewer, verdict=verdict, reason="r", at=at)
            if state == "approved" and rnd.random() < 0.9:
                status = rnd.choice(["matched", "matched", "matched", "ambiguous", "no_match"])
                state = svc.record_match(
                    s,
                    pid,
                    status=status,
                    score=0.9,
                    record_id="R" if status == "matched" else None,
                    at=at,
                )
            if state == "matched" and rnd.random() < 0.9:
                permitted = svc.get_request(s, pid).decision.permitted_fields
                released = {
                    f: (
                        "LS1 4AP"
                        if f == "address-postalcode" and rnd.random() < 0.5
                        else "N1 9GU"
                        if f == "address-postalcode"
                        else "x"
                    )
                    for f in permitted
                }
                svc.disclose(s, pid, released=released, at=at)
                state = "disclosed"
            if state == "disclosed" and rnd.random() < 0.8:
                if rnd.random() < 0.5 or base is STATUS:
                    svc.notify(s, pid, actor="t", at=at)
                else:
                    svc.exempt(
                        s,
                        pid,
                        agreements.get(base["agreement"]),
                        exemption_id=agreements.get(base["agreement"])
                        .notification.exemptions[0]
                        .id,
                        reason="r",
                        review_on=day,
                        actor="t",
                        at=at,
                    )


def _independent_counts(factory) -> dict[str, Counter]:
    """Recount from request_view (transitions, reviews, decision) without the report code."""
    out: dict[str, Counter] = {}
    with transaction(factory) as s:
        for item in svc.list_requests(s, state=None, limit=100_000):
            view = svc.request_view(s, svc.get_request(s, item["id"]))
            c = out.setdefault(view["agreement"], Counter())
            states = [t["to"] for t in view["transitions"]]
            c["received"] += 1
            c["refused_by_engine"] += view["decision"]["outcome"] == "refused"
            c["sent_to_review"] += view["decision"]["outcome"] == "needs_review"
            c["refused_by_reviewer"] += any(r["verdict"] == "refuse" for r in view["reviews"])
            c["approved"] += "approved" in states
            c["disclosed"] += "disclosed" in states
            c["notified"] += "notified" in states
            c["exempted"] += "exempted" in states
            c["matched"] += "matched" in states
            for rule in view["decision"]["refused_by"]:
                c["rule:" + rule] += 1
    return out


def test_report_matches_independent_count(factory, agreements):
    _populate(factory, agreements, 60, seed=7)
    expected = _independent_counts(factory)
    with transaction(factory) as s:
        report = build_report(
            s, ReportQuery(None, date(2016, 1, 1), date(2020, 1, 1), Period.YEAR), public=False
        )
    totals = {t["agreement"]: t for t in report["totals"]}
    assert set(totals) == set(expected)
    for agreement, c in expected.items():
        t = totals[agreement]
        for key in (
            "received",
            "refused_by_engine",
            "sent_to_review",
            "refused_by_reviewer",
            "approved",
            "disclosed",
            "notified",
            "exempted",
            "matched",
        ):
            assert t[key] == c[key], (agreement, key)
        for rule, n in t["refused_by_rule"].items():
            assert n == c["rule:" + rule]
        assert t["new_information"] + t["already_known"] <= t["disclosed"]
        assert t["matched"] + t["ambiguous"] + t["no_match"] <= t["approved"]
    # Rows add up to the totals, period by period.
    for agreement, t in totals.items():
        rows = [r for r in report["rows"] if r["agreement"] == agreement]
        assert sum(r["received"] for r in rows) == t["received"]
    assert sum(t["received"] for t in totals.values()) == 60


def test_report_filters_by_agreement_and_date(factory, agreements):
    _populate(factory, agreements, 30, seed=3)
    with transaction(factory) as s:
        everything = build_report(
            s, ReportQuery(None, date(2016, 1, 1), date(2020, 1, 1)), public=False
        )
        police = build_report(
            s, ReportQuery("nhs-police-tracing", date(2016, 1, 1), date(2020, 1, 1)), public=False
        )
        first_half = build_report(
            s, ReportQuery(None, date(2017, 1, 1), date(2017, 6, 30)), public=False
        )
    assert {r["agreement"] for r in police["rows"]} <= {"nhs-police-tracing"}
    all_police = [t for t in everything["totals"] if t["agreement"] == "nhs-police-tracing"]
    assert [t["received"] for t in police["totals"]] == [t["received"] for t in all_police]
    assert all("2017-01" <= r["period"] <= "2017-06" for r in first_half["rows"])


def test_public_report_suppresses_small_counts(factory, agreements):
    _populate(factory, agreements, 25, seed=11)
    with transaction(factory) as s:
        public = build_report(
            s, ReportQuery(None, date(2016, 1, 1), date(2020, 1, 1), Period.YEAR), public=True
        )
    cells = [
        v
        for row in public["rows"] + public["totals"]
        for k, v in row.items()
        if isinstance(v, int) and not isinstance(v, bool)
    ]
    assert all(v == 0 or v >= 10 for v in cells)
    assert any(v == "<10" for row in public["rows"] for v in row.values())
    csv_text = report_csv(public)
    assert csv_text.splitlines()[0].startswith("agreement,period,received")
    assert "<10" in csv_text


def test_suppress_and_ratios():
    assert [suppress(n) for n in (0, 1, 9, 10, 250)] == [0, "<10", "<10", 10, 250]
    c = Counts()
    facts = RequestFacts(
        "a",
        date(2017, 1, 1),
        "notified",
        "approved",
        (),
        False,
        True,
        "matched",
        True,
        True,
        "notified",
    )
    for _ in range(12):
        c.add(facts)
    assert c.ratios()["new_information_share_of_disclosed"] == 1.0
    assert c.as_dict(public=True)["ratios"]["disclosed_share"] == 1.0
    small = Counts()
    small.add(facts)
    assert small.as_dict(public=True)["ratios"]["disclosed_share"] is None
    assert small.as_dict(public=False)["ratios"]["disclosed_share"] == 1.0
