"""The demo replay: deterministic stream, real pipeline, figures equal to the store's counts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from safehaven.agreements import load_dir
from safehaven.demo.parameters import Parameters, load_parameters
from safehaven.demo.registers import build_registers
from safehaven.demo.runner import Replay
from safehaven.demo.stream import choose_purpose, generate
from safehaven.demo.summary import summary_dict, totals
from safehaven.demo.variants import variant
from safehaven.store.db import make_engine, session_factory, upgrade

ROOT = Path(__file__).resolve().parents[2]


def scaled(params: Parameters, scale: float) -> Parameters:
    data = params.model_dump(by_alias=True)
    for stream in data["streams"]:
        for arrival in stream["arrivals"]:
            arrival["per_month"] *= scale
    return Parameters.model_validate(data)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("demo-home")
    saved = os.environ.get("SAFEHAVEN_HOME")
    os.environ["SAFEHAVEN_HOME"] = str(home)
    try:
        params = scaled(load_parameters(), 0.012)
        regs = build_registers(params, people=2000)
        items = generate(params, regs.health, regs.education, regs.outsiders)
        yield {"home": home, "params": params, "regs": regs, "items": items}
    finally:
        if saved is None:
            os.environ.pop("SAFEHAVEN_HOME", None)
        else:
            os.environ["SAFEHAVEN_HOME"] = saved


def replay(world: dict[str, Any], name: str, what_if: str | None = None) -> Any:
    engine = make_engine(f"sqlite:///{world['home']}/{name}.db")
    upgrade(engine)
    agreements, firewall = (load_dir(), False) if what_if is None else variant(
        what_if, load_dir())  # type: ignore[arg-type]
    factory = session_factory(engine)
    result = Replay(factory, world["params"], agreements, world["regs"].matchers,
                    firewall_on=firewall).run(world["items"])
    return engine, factory, result


def test_parameters_file_is_complete_and_strict(tmp_path):
    params = load_parameters()
    assert {s.id for s in params.streams} == {
        "home-office-nhs", "home-office-dfe", "police-nhs", "status-checks"}
    nhs = next(s for s in params.streams if s.id == "home-office-nhs")
    assert nhs.arrivals[0].per_month == pytest.approx(8127 / 11, abs=1)
    dfe = next(s for s in params.streams if s.id == "home-office-dfe")
    assert all(a.per_month <= 1500 for a in dfe.arrivals)
    bad = tmp_path / "p.yaml"
    original = (ROOT / "src/safehaven/demo/parameters.yaml").read_text()
    bad.write_text(original.replace("seed: 2016\n", "seed: 2016\nsead: 1\n", 1))
    with pytest.raises(ValueError, match="sead"):
        load_parameters(bad)


def test_stream_is_deterministic_dated_and_policy_free(world):
    params, regs = world["params"], world["regs"]
    again = generate(params, regs.health, regs.education, regs.outsiders)
    assert [(i.request_id, i.subject, i.grounds) for i in again] == [
        (i.request_id, i.subject, i.grounds) for i in world["items"]]
    days = [i.received_at.date() for i in world["items"]]
    assert days == sorted(days)
    assert min(days) >= date(2016, 1, 1) and max(days) <= date(2018, 12, 31)
    # The 2016 NHS stream goes under the 2016 practice, 2017+ under the MoU.
    for item in world["items"]:
        if item.stream == "home-office-nhs":
            want = ("hscic-home-office-2016-practice" if item.received_at.year == 2016
                    else "nhs-digital-home-office-2017")
            assert item.agreement == want


def test_requester_cites_the_narrowest_purpose_in_force():
    agreements = load_dir()
    mou = agreements.get("nhs-digital-home-office-2017")
    practice = agreements.get("hscic-home-office-2016-practice")
    assert choose_purpose(practice, date(2016, 5, 1), "serious") == "immigration-offence-trace"
    assert choose_purpose(mou, date(2017, 5, 1), "serious") == "deportation-serious-crime"
    assert choose_purpose(mou, date(2018, 6, 1), "immigration") == "immigration-offence-trace"
    assert choose_purpose(mou, date(2019, 1, 1), "serious") == "immigration-offence-trace"


def test_replay_figures_equal_independent_counts_from_the_store(world):
    engine, factory, result = replay(world, "asis")
    with factory() as session:
        summary = summary_dict(session, world["params"])
    with engine.connect() as conn:
        def count(sql: str, **kw: Any) -> int:
            return int(conn.execute(text(sql), kw).scalar_one())

        assert count("select count(*) from requests") == result.requests > 0
        for agreement, t in summary["totals"].items():
            a = {"a": agreement}
            assert t["received"] == count(
                "select count(*) from requests where agreement_id = :a", **a)
            assert t["disclosed"] == count(
                "select count(*) from disclosures d join requests r on r.id = d.request_id "
                "where r.agreement_id = :a", **a)
            assert t["refused_by_engine"] == count(
                "select count(*) from decisions d join requests r on r.id = d.request_id "
                "where r.agreement_id = :a and d.outcome = 'refused'", **a)
            assert t["notified"] + t["exempted"] == count(
                "select count(*) from notifications n join requests r on r.id = n.request_id "
                "where r.agreement_id = :a", **a)
            assert t["new_information"] == count(
                "select count(*) from disclosures d join requests r on r.id = d.request_id "
                "where r.agreement_id = :a and d.new_information", **a)
        for c, pub in zip(summary["published_vs_simulated"], world["params"].published,
                          strict=True):
            received = count("select count(*) from requests where agreement_id = :a and "
                             "received_at >= :lo and received_at < :hi", a=pub.agreement,
                             lo=pub.start.isoformat(), hi=f"{pub.end.isoformat()} 99")
            disclosed = count(
                "select count(*) from disclosures d join requests r on r.id = d.request_id "
                "where r.agreement_id = :a and r.received_at >= :lo and r.received_at < :hi",
                a=pub.agreement, lo=pub.start.isoformat(), hi=f"{pub.end.isoformat()} 99")
            assert c["simulated_counts"] == f"{disclosed:,} / {received:,}"
        # Four-eyes held for every serious-crime request that was disclosed.
        assert count(
            "select count(*) from requests r join disclosures d on d.request_id = r.id "
            "where r.purpose = 'deportation-serious-crime' and "
            "(select count(distinct reviewer) from reviews v where v.request_id = r.id "
            "and v.verdict = 'approve') < 2") == 0
        # Every step is on the ledger: one entry per transition (no firewall switch here).
        assert count("select count(*) from ledger_entries") == count(
            "select count(*) from transitions")
    engine.dispose()


def test_what_if_firewall_refuses_every_home_office_health_and_education_request(world):
    base_engine, base_factory, _ = replay(world, "base-fw")
    engine, factory, _ = replay(world, "fw", "firewall")
    with base_factory() as s:
        base = totals(s, date(2016, 1, 1), date(2018, 12, 31))
    with factory() as s:
        fw = totals(s, date(2016, 1, 1), date(2018, 12, 31))
    for agreement in ("hscic-home-office-2016-practice", "nhs-digital-home-office-2017",
                      "dfe-home-office-2016"):
        assert fw[agreement]["received"] == base[agreement]["received"] > 0
        assert fw[agreement]["disclosed"] == 0
        assert fw[agreement]["refused_by_engine"] == fw[agreement]["received"]
        assert any(r.startswith("firewall.") for r in fw[agreement]["refused_by_rule"])
    # Police tracing is not an immigration purpose: the same answers either way.
    assert fw["nhs-police-tracing"]["disclosed"] == base["nhs-police-tracing"]["disclosed"]
    base_engine.dispose()
    engine.dispose()


def test_what_if_original_keeps_disclosing_after_may_2018(world):
    engine, factory, _ = replay(world, "orig", "original")
    with factory() as s:
        late = totals(s, date(2018, 11, 3), date(2018, 12, 31))
    mou = late.get("nhs-digital-home-office-2017")
    assert mou is not None and mou["disclosed"] > 0
    assert "agreement.in_force" not in mou["refused_by_rule"]
    engine.dispose()


def test_docs_record_the_calibrated_parameters():
    """docs/demo.md must state the values in parameters.yaml (so the two cannot drift)."""
    doc = (ROOT / "docs" / "demo.md").read_text()
    for stream in load_parameters().streams:
        assert f"`{stream.id}`" in doc
        assert f"{stream.present_in_register:g}" in doc, (stream.id, "present_in_register")
