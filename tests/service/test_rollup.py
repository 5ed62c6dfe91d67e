"""The daily report rollup equals the raw aggregation, whatever happened to the requests.

``build_report`` reads ``report_daily``/``report_daily_refusals`` (``service.rollup``),
maintained by ``service.requests._write_steps`` in each step's transaction.  The reference
is the raw aggregation (``reports.tally_days`` / ``tally_sql``, itself held equal to the
per-request ``tally(iter_facts(...))``).  Here hypothesis generates request histories —
submits under every kind of outcome, four-eyes and single reviews with duplicate
reviewers, match / ambiguous / no match, disclosures that are news, not news or not an
address, notices, exemptions, replays, failed use cases and rolled-back transactions,
received in several time zones around month, quarter and year ends — drives them through
the real service functions on SQLite and PostgreSQL, and compares every agreement-day and
every period.  Also: the migration's backfill equals the rebuild, a failed unit inside a
group-commit savepoint leaves no increment, and ``safehaven reports rebuild`` repairs.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, inspect, select, update
from typer.testing import CliRunner

from safehaven.api.writer import GroupCommitter
from safehaven.cli import app
from safehaven.domain.lifecycle import IllegalTransition
from safehaven.domain.statistics import COUNT_FIELDS, Counts, Period, tally
from safehaven.service import requests as svc
from safehaven.service import rollup
from safehaven.service.reports import (
    ReportQuery,
    build_report,
    iter_facts,
    rebuild_rollup,
    tally_days,
    tally_rollup,
    tally_sql,
)
from safehaven.store import db as store_db
from safehaven.store.db import make_engine, session_factory, transaction, upgrade
from safehaven.store.models import ReportDailyRow, ReportRefusalRow, TransitionRow
from tests.builders import DFE_TRACE, NHS_DEPORT, NHS_TRACE, POLICE, STATUS, body, req
from tests.conftest import _drop_pg, _fresh_pg

DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

# Days around a year end (months, quarters and years all change) and a quarter end after
# the NHS MoU narrowed (multi-rule refusals); offsets and hours put several requests on
# one agreement-day and some next to midnight.
ANCHORS = (date(2017, 12, 31), date(2018, 6, 30))
ZONES = (UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5)))
KINDS = {
    "police": (POLICE, {}),
    "police_old_offence": (POLICE, {"grounds__offence_date": "2005-01-01"}),
    "status": (STATUS, {}),
    "dfe": (DFE_TRACE, {}),
    "nhs_trace": (NHS_TRACE, {}),
    "nhs_deport": (NHS_DEPORT, {}),  # four-eyes: two reviewers
    "unknown_agreement": (POLICE, {"agreement": "no-such-agreement"}),
}


class Abort(Exception):
    """Raised at the end of a transaction the history wants rolled back."""


plans = st.fixed_dictionaries({
    "kind": st.sampled_from(sorted(KINDS)),
    "anchor": st.sampled_from(ANCHORS),
    "offset": st.integers(-2, 2),
    "hour": st.sampled_from([0, 12, 23]),
    "zone": st.sampled_from(ZONES),
    "firewall": st.booleans(),
    "known": st.sampled_from([None, "LS1 4AP", "LS1 4AP", "N1 9GU"]),
    "abort_submit": st.booleans(),
    "replay": st.booleans(),
    "reviews": st.lists(st.tuples(st.integers(0, 2),
                                  st.sampled_from(["approve", "approve", "refuse"])),
                        max_size=3),
    "abort_review": st.booleans(),
    "match": st.sampled_from([None, "matched", "matched", "matched", "ambiguous", "no_match"]),
    "release": st.sampled_from([None, "address", "postcode_same", "postcode_other",
                                "no_address"]),
    "notice": st.sampled_from([None, "notify", "exempt", "exempt_bad"]),
    "abort_after": st.booleans(),
    # Later, the exemption's review: kept for longer, or lifted (the person told after all).
    "exemption_review": st.sampled_from([None, "renew", "lift", "lift"]),
    "abort_exemption_review": st.booleans(),
})


@contextmanager
def fresh_store(dialect: str, request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    """A migrated empty store per hypothesis example (the fixtures give one per test)."""
    if dialect == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/{uuid.uuid4().hex}.db")
        upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    name, engine = _fresh_pg(request.getfixturevalue("pg_template"))
    try:
        yield engine
    finally:
        engine.dispose()
        _drop_pg(name)


def _attempt(factory: Any, work: Any, abort: bool) -> None:
    """One transaction: commit, or roll back on a use case's refusal or an injected abort."""
    try:
        with transaction(factory) as s:
            work(s)
            if abort:
                raise Abort
    except (Abort, svc.ReviewError, svc.NotificationError, svc.MinimisationError,
            IllegalTransition, svc.NotFoundError):
        pass


def run_history(factory: Any, agreements: Any, history: list[dict[str, Any]]) -> None:
    """Drive ``history`` through the service, phase by phase so that the steps of
    different requests interleave (all submits, then all reviews, then the rest)."""
    ids: list[str | None] = []
    for i, p in enumerate(history):
        base, changes = KINDS[p["kind"]]
        day = p["anchor"] + timedelta(days=p["offset"])
        fields = {"made_on": day.isoformat(), "request_id": f"r{i}", **changes}
        if p["known"]:
            fields["subject__known_address"] = {"postalcode": p["known"]}
        request = req(body(base, **fields))
        at = datetime(day.year, day.month, day.day, p["hour"], 30, tzinfo=p["zone"])
        got: list[str] = []
        _attempt(factory, lambda s, r=request, at=at, fw=p["firewall"], got=got: got.append(
            svc.submit(s, r, agreements, received_at=at, firewall_on=fw).public_id),
            p["abort_submit"])
        ids.append(got[0] if got and not p["abort_submit"] else None)
        if p["replay"]:  # the same key and body again: the stored answer, no new steps
            _attempt(factory, lambda s, r=request, at=at: svc.submit(
                s, r, agreements, received_at=at + timedelta(hours=1)), False)

    def review(s: Any, pid: str, who: int, verdict: Any) -> None:
        at = svc.get_request(s, pid).received_at
        svc.review(s, pid, reviewer=f"rev{who}", verdict=verdict, reason="r", at=at)

    # One transaction per review, as the reviewer desk does; a second review by the same
    # person, or of a request no longer in review, is refused and rolled back.
    for pid, p in zip(ids, history, strict=True):
        for n, (who, verdict) in enumerate(p["reviews"] if pid is not None else ()):
            _attempt(factory, lambda s, pid=pid, who=who, verdict=verdict: review(
                s, pid, who, verdict), p["abort_review"] and n == 0)

    def follow(s: Any, pid: str, p: dict[str, Any]) -> None:
        row = svc.get_request(s, pid)
        at = row.received_at
        if p["match"] and row.state == "approved":
            svc.record_match(s, pid, status=p["match"], score=0.9,
                             record_id="R1" if p["match"] == "matched" else None, at=at)
        if p["release"] and row.state == "matched":
            assert row.decision is not None
            permitted = row.decision.permitted_fields
            released = {
                "address": {f: "1 Test Street" for f in permitted if f == "address"},
                "postcode_same": {f: "LS1 4AP" for f in permitted if f == "address-postalcode"},
                "postcode_other": {f: "M1 1AA" for f in permitted
                                   if f == "address-postalcode"},
                "no_address": {f: "x" for f in permitted
                               if f not in ("address", "address-postalcode")},
            }[p["release"]]
            svc.disclose(s, pid, released=released, at=at)
        if p["notice"] and row.state == "disclosed":
            if p["notice"] == "notify":
                svc.notify(s, pid, actor="t", at=at)
            else:
                agreement = agreements.get(row.agreement_id)
                exemptions = agreement.notification.exemptions
                # "exempt_bad" names an exemption no agreement allows: refused, rolled back
                exemption = exemptions[0].id if exemptions and p["notice"] == "exempt" else "x"
                svc.exempt(s, pid, agreement, exemption_id=exemption, reason="r",
                           review_on=at.date(), actor="t", at=at)

    for pid, p in zip(ids, history, strict=True):
        if pid is not None:
            _attempt(factory, lambda s, pid=pid, p=p: follow(s, pid, p), p["abort_after"])

    def review_exemption(s: Any, pid: str, action: str) -> None:
        row = svc.get_request(s, pid)
        at = row.received_at + timedelta(days=2)
        if action == "renew":
            agreement = agreements.get(row.agreement_id)
            svc.renew_exemption(s, pid, agreement, reason="still", actor="t", at=at,
                                review_on=at.date() + timedelta(days=1))
        else:
            svc.lift_exemption(s, pid, reason="over", actor="t", at=at)

    # A request not exempted is refused (NotificationError) and rolled back.
    for pid, p in zip(ids, history, strict=True):
        actions = {None: [], "renew_then_lift": ["renew", "lift"]}.get(
            p.get("exemption_review"), [p.get("exemption_review")])
        for action in actions if pid is not None else ():
            _attempt(factory, lambda s, pid=pid, a=action: review_exemption(s, pid, a),
                     p.get("abort_exemption_review", False))


def _cmp(table: dict[Any, Counts]) -> dict[Any, Any]:
    """Counts as comparable data, every field and every refusal rule, zero rules dropped."""
    return {k: ({n: getattr(c, n) for n in COUNT_FIELDS},
                {r: n for r, n in c.refused_by_rule.items() if n})
            for k, c in table.items()}


def assert_rollup_is_reference(factory: Any) -> dict[Any, Counts]:
    """Every agreement-day, then every period over the whole range and a cut-through
    window, with and without an agreement filter; returns the per-day reference."""
    with transaction(factory) as s:
        reference = tally_days(s)
        stored = rollup.read_daily(s, None, None, None)
        assert _cmp(stored) == _cmp(reference)
        agreements_seen = sorted({a for a, _ in reference}) or ["nhs-police-tracing"]
        windows = [(date(2017, 1, 1), date(2019, 1, 1)), (date(2017, 12, 31), date(2018, 6, 29))]
        for period in Period:
            for lo, hi in windows:
                for agreement in (None, agreements_seen[0]):
                    q = ReportQuery(agreement, lo, hi, period)
                    assert _cmp(tally_rollup(s, q)) == _cmp(tally_sql(s, q)), q
        q = ReportQuery(None, date(2017, 1, 1), date(2019, 1, 1), Period.QUARTER)
        assert _cmp(tally_rollup(s, q)) == _cmp(tally(iter_facts(s, q), q.period))
    return reference


@pytest.mark.parametrize("dialect", DIALECTS)
def test_rollup_equals_reference_over_random_histories(dialect, agreements, request, tmp_path):
    @settings(max_examples=int(os.environ.get("SAFEHAVEN_ROLLUP_EXAMPLES", "25")),
              deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(history=st.lists(plans, min_size=1, max_size=14))
    def check(history: list[dict[str, Any]]) -> None:
        with fresh_store(dialect, request, tmp_path) as engine:
            factory = session_factory(engine)
            run_history(factory, agreements, history)
            assert_rollup_is_reference(factory)

    check()


def _populate(factory: Any, agreements: Any) -> None:
    """A fixed history that reaches every count (asserted below), for the other tests."""
    history = []
    for i, kind in enumerate(sorted(KINDS) * 4):
        history.append({
            "kind": kind, "anchor": ANCHORS[i % 2], "offset": i % 3 - 1, "hour": 12,
            "zone": UTC, "firewall": (i // 7) % 2 == 1, "known": [None, "LS1 4AP"][i % 2],
            "abort_submit": False, "replay": False,
            "reviews": [(0, "refuse")] if i % 5 == 4 else [(0, "approve"), (1, "approve")],
            "abort_review": False,
            "match": ["matched", "matched", "ambiguous", "no_match"][i % 4],
            "release": ["address", "postcode_same", "no_address"][i % 3],
            "notice": [None, "notify", "exempt"][i % 3], "abort_after": False,
            # Only exempted requests can be reviewed; the rest are refused and rolled back.
            "exemption_review": None,
        })
    # Two more police traces that reach an exemption from notice: one kept, one renewed
    # and then lifted (the person told after all).
    for n, review in enumerate(("renew", "renew_then_lift")):
        history.append({**history[0], "kind": "police", "anchor": ANCHORS[n],
                        "reviews": [(0, "approve")], "match": "matched",
                        "release": "address", "notice": "exempt",
                        "exemption_review": review})
    run_history(factory, agreements, history)


def test_rollup_equals_reference_over_a_history_reaching_every_count(factory, agreements):
    _populate(factory, agreements)
    reference = assert_rollup_is_reference(factory)
    total = Counts()
    for c in reference.values():
        for name in COUNT_FIELDS:
            setattr(total, name, getattr(total, name) + getattr(c, name))
    missing = [name for name in COUNT_FIELDS if not getattr(total, name)]
    assert not missing, f"the history never reaches {missing}: untested"
    with transaction(factory) as s:
        events = set(s.execute(select(TransitionRow.event)).scalars())
    assert {"exempt", "renew_exemption", "lift_exemption"} <= events, "exemption review untested"
    assert any(len(c.refused_by_rule) > 1 for c in reference.values())


def test_migration_backfill_equals_rebuild(engine, agreements):
    factory = session_factory(engine)
    _populate(factory, agreements)
    with transaction(factory) as s:
        maintained = rollup.read_daily(s, None, None, None)
        assert maintained
        result = rebuild_rollup(s)
        rebuilt = rollup.read_daily(s, None, None, None)
    assert result.changed_days == 0 and result.agreement_days == len(rebuilt)
    assert result.refusal_rows == sum(len(c.refused_by_rule) for c in rebuilt.values()) > 0
    assert _cmp(rebuilt) == _cmp(maintained)
    cfg = store_db._alembic_config(engine)
    command.downgrade(cfg, "0006")  # drops the rollup
    command.upgrade(cfg, "head")  # creates it again and backfills it with its own SQL
    with transaction(factory) as s:
        backfilled = rollup.read_daily(s, None, None, None)
    assert _cmp(backfilled) == _cmp(rebuilt)


def test_failed_unit_in_a_group_commit_leaves_no_increment(factory, agreements):
    committer = GroupCommitter(factory)
    shared = datetime(2017, 12, 30, 9, tzinfo=UTC)  # a good unit's agreement-day
    alone = datetime(2017, 12, 29, 9, tzinfo=UTC)  # only the failing unit's

    def unit(at: datetime, key: str, fail: bool) -> Any:
        def run(s: Any) -> str:
            result = svc.submit(s, req(body(POLICE, request_id=key)), agreements, received_at=at)
            if fail:  # after its steps, and so its rollup upsert, were written
                raise RuntimeError("unit failed")
            return result.public_id
        return run

    batch = [(unit(shared, "a", False), Future()), (unit(shared, "b", True), Future()),
             (unit(alone, "c", True), Future()), (unit(shared, "d", False), Future())]
    committer._run_batch(batch)  # one transaction, a savepoint per unit, as the writer does
    assert [f.exception() is None for _, f in batch] == [True, False, False, True]
    with transaction(factory) as s:
        days = rollup.read_daily(s, None, None, None)
        assert _cmp(days) == _cmp(tally_days(s))
    assert set(days) == {("nhs-police-tracing", shared.date())}
    assert days[("nhs-police-tracing", shared.date())].received == 2


def test_a_rolled_back_step_leaves_no_increment(factory, agreements):
    at = datetime(2018, 1, 2, 9, tzinfo=UTC)
    with transaction(factory) as s:
        pid = svc.submit(s, req(body(POLICE)), agreements, received_at=at).public_id
    with pytest.raises(RuntimeError), transaction(factory) as s:
        svc.review(s, pid, reviewer="a", verdict="refuse", reason="r", at=at)
        raise RuntimeError("after the review's upsert")
    with transaction(factory) as s:
        c = rollup.read_daily(s, None, None, None)[("nhs-police-tracing", at.date())]
        assert (c.received, c.sent_to_review, c.refused_by_reviewer, c.pending) == (1, 1, 0, 1)
        svc.review(s, pid, reviewer="a", verdict="refuse", reason="r", at=at)
    with transaction(factory) as s:
        c = rollup.read_daily(s, None, None, None)[("nhs-police-tracing", at.date())]
        assert (c.refused_by_reviewer, c.pending) == (1, 0)


def test_build_report_reads_the_rollup(factory, agreements):
    """The report's numbers are the rollup's: change the rollup, the report follows."""
    _populate(factory, agreements)
    q = ReportQuery(None, date(2017, 1, 1), date(2019, 1, 1), Period.YEAR)
    with transaction(factory) as s:
        before = build_report(s, q, public=False)
        s.execute(update(ReportDailyRow).values(received=ReportDailyRow.received + 1000))
        after = build_report(s, q, public=False)
        days = s.execute(select(func.count()).select_from(ReportDailyRow)).scalar_one()
        s.rollback()
    assert sum(t["received"] for t in after["totals"]) == (
        sum(t["received"] for t in before["totals"]) + 1000 * days)


runner = CliRunner()


def test_cli_reports_rebuild_repairs_and_checks(database_url, factory, agreements):
    _populate(factory, agreements)
    with transaction(factory) as s:  # damage the rollup: what a bad restore could leave
        reference = _cmp(tally_days(s))
        key = min(k for k, (_, rules) in reference.items() if not rules)
        s.execute(update(ReportDailyRow).values(received=ReportDailyRow.received + 7)
                  .where(ReportDailyRow.agreement_id == key[0], ReportDailyRow.day == key[1]))
        s.execute(delete(ReportRefusalRow))
        damaged = _cmp(rollup.read_daily(s, None, None, None))
    broken = {key} | {k for k, (_, rules) in reference.items() if rules}
    assert {k for k in reference if damaged[k] != reference[k]} == broken

    def run(*args: str) -> Any:
        res = runner.invoke(app, ["reports", "rebuild", "--database-url", database_url, *args])
        return res.exit_code, json.loads(res.stdout) if "--json" in args else res.stdout

    code, doc = run("--check", "--json")
    assert (code, doc["written"], doc["changed_days"]) == (1, False, len(broken))
    with transaction(factory) as s:  # --check wrote nothing
        assert _cmp(rollup.read_daily(s, None, None, None)) == damaged

    day = key[1].isoformat()
    code, doc = run("--from", day, "--to", day, "--json")
    assert (code, doc["written"]) == (0, True)
    assert doc["changed_days"] == sum(1 for k in broken if k[1] == key[1])
    with transaction(factory) as s:
        partly = _cmp(rollup.read_daily(s, None, None, None))
    for k in reference:  # that day repaired, every other day left as it was
        assert partly[k] == (reference[k] if k[1] == key[1] else damaged[k]), k

    code, doc = run("--json")
    assert code == 0 and doc["agreement_days"] == len(reference)
    assert doc["refusal_rows"] == sum(len(rules) for _, rules in reference.values())
    with transaction(factory) as s:
        assert _cmp(rollup.read_daily(s, None, None, None)) == reference
    code, out = run("--check")
    assert code == 0 and "0 differed" in out
    code, _ = run("--from", "2018-02-01", "--to", "2018-01-01")
    assert code == 2


def test_rollup_tables_match_the_statistics_fields(engine):
    """The migration made one counter column per ``COUNT_FIELDS`` entry, in order (the
    rollup reads them into ``Counts`` by name and the backfill writes them by position)."""
    columns = [c["name"] for c in inspect(engine).get_columns("report_daily")]
    assert columns == ["agreement_id", "day", *COUNT_FIELDS]
    refusals = [c["name"] for c in inspect(engine).get_columns("report_daily_refusals")]
    assert refusals == ["agreement_id", "day", "rule", "n"]
