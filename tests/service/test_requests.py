"""Request use cases against a real store (every test runs on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import pickle
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from safehaven.domain.lifecycle import IllegalTransition
from safehaven.service import requests as svc
from safehaven.service import settings
from safehaven.store.db import transaction
from safehaven.store.models import (
    CapCounterRow,
    DecisionRow,
    DisclosureRow,
    RequestRow,
    ReviewRow,
    TransitionRow,
)
from tests.builders import DFE_TRACE, NHS_DEPORT, NHS_TRACE, POLICE, STATUS, body, req

AT = datetime(2017, 9, 2, 10, 0, tzinfo=UTC)


def submit(factory, agreements, request_body, *, at=AT, firewall_on=None):
    with transaction(factory) as s:
        return svc.submit(s, req(request_body), agreements, received_at=at, firewall_on=firewall_on)


def test_fresh_install_has_firewall_on_and_refuses_immigration(factory, agreements):
    result = submit(factory, agreements, NHS_TRACE)
    assert result.outcome == "refused" and result.state == "refused"
    assert result.decision["firewall"] == "on"
    assert "firewall.no-health-education-immigration" in result.decision["refused_by"]


def test_firewall_switch_is_recorded(factory, agreements):
    with transaction(factory) as s:
        assert settings.firewall_enabled(s)
        with pytest.raises(ValueError, match="reason"):
            settings.set_firewall(s, False, actor="ctl", reason="  ")
    with transaction(factory) as s:
        settings.set_firewall(s, False, actor="caldicott-guardian", reason="test of switch")
    result = submit(factory, agreements, NHS_TRACE)
    assert result.outcome == "needs_review" and result.decision["firewall"] == "off"
    with transaction(factory) as s:
        settings.set_firewall(s, True, actor="caldicott-guardian", reason="back on")
        history = settings.firewall_history(s)
    assert [(h.value, h.actor) for h in history] == [
        ("off", "caldicott-guardian"),
        ("on", "caldicott-guardian"),
    ]


def test_submit_stores_request_decision_and_transitions(factory, agreements):
    result = submit(factory, agreements, POLICE)
    with transaction(factory) as s:
        row = svc.get_request(s, result.public_id)
        assert row.state == "in_review"
        assert row.body["subject"]["family"] == "Testsuspect"
        decision = s.execute(
            select(DecisionRow).where(DecisionRow.request_id == row.id)
        ).scalar_one()
        assert decision.agreement_sha256 == agreements.get("nhs-police-tracing").sha256
        assert decision.outcome == "needs_review"
        assert any(r["id"] == "grounds.offence_age" for r in decision.rules)
        steps = [
            (t.from_state, t.to_state)
            for t in s.execute(
                select(TransitionRow)
                .where(TransitionRow.request_id == row.id)
                .order_by(TransitionRow.id)
            ).scalars()
        ]
    assert steps == [(None, "received"), ("received", "decided"), ("decided", "in_review")]


def test_idempotent_on_request_id(factory, agreements):
    first = submit(factory, agreements, {**POLICE, "request_id": "met-0001"})
    again = submit(factory, agreements, {**POLICE, "request_id": "met-0001"})
    assert first.created and not again.created
    assert again.public_id == first.public_id and again.decision == first.decision
    with pytest.raises(svc.IdempotencyConflictError, match="request_id"):
        submit(factory, agreements, {**POLICE, "request_id": "met-0001", "made_on": "2017-08-31"})
    # The same key from another agency is a different request.
    other = submit(
        factory,
        agreements,
        {**POLICE, "request_id": "met-0001", "requester": "west-midlands-police"},
    )
    assert other.public_id != first.public_id
    with transaction(factory) as s:
        assert s.scalar(select(func.count()).select_from(RequestRow)) == 2


def test_failed_submit_leaves_nothing(factory, agreements):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction(factory) as s:
        svc.submit(s, req(POLICE), agreements, received_at=AT)
        raise Boom
    with transaction(factory) as s:
        assert s.scalar(select(func.count()).select_from(RequestRow)) == 0
        assert s.scalar(select(func.count()).select_from(TransitionRow)) == 0


def test_cap_counts_by_month_received_and_skips_refusals(factory, agreements):
    with transaction(factory) as s:
        settings.set_firewall(s, False, actor="t", reason="cap test")
        s.add(CapCounterRow(agreement_id="dfe-home-office-2016", month="2016-11", used=1498))
    at = datetime(2016, 11, 20, tzinfo=UTC)
    refused = submit(factory, agreements, {**DFE_TRACE, "grounds": {}}, at=at)
    assert refused.outcome == "refused"
    r1499 = submit(factory, agreements, DFE_TRACE, at=at)
    r1500 = submit(factory, agreements, DFE_TRACE, at=at)
    r1501 = submit(factory, agreements, DFE_TRACE, at=at)
    assert [r1499.outcome, r1500.outcome, r1501.outcome] == [
        "needs_review",
        "needs_review",
        "refused",
    ]
    assert r1501.decision["refused_by"] == ["volume.cap"]
    nxt = submit(factory, agreements, DFE_TRACE, at=datetime(2016, 12, 1, tzinfo=UTC))
    assert nxt.outcome == "needs_review"
    with transaction(factory) as s:
        assert svc.cap_used(s, "dfe-home-office-2016", "2016-11") == 1500
        assert svc.cap_used(s, "dfe-home-office-2016", "2016-12") == 1


def test_cap_holds_under_concurrent_submits(factory, agreements):
    with transaction(factory) as s:
        settings.set_firewall(s, False, actor="t", reason="cap test")
        s.add(CapCounterRow(agreement_id="dfe-home-office-2016", month="2016-11", used=1490))
    at = datetime(2016, 11, 20, tzinfo=UTC)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def worker():
        try:
            for _ in range(5):
                outcomes.append(submit(factory, agreements, DFE_TRACE, at=at).outcome)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert outcomes.count("needs_review") == 10 and outcomes.count("refused") == 10
    with transaction(factory) as s:
        assert svc.cap_used(s, "dfe-home-office-2016", "2016-11") == 1500


def _in_review(factory, agreements, body=NHS_DEPORT, at=datetime(2018, 7, 1, tzinfo=UTC)):
    with transaction(factory) as s:
        settings.set_firewall(s, False, actor="t", reason="review test")
    result = submit(factory, agreements, {**body, "made_on": at.date().isoformat()}, at=at)
    assert result.state == "in_review"
    return result.public_id


def test_four_eyes_needs_two_different_reviewers(factory, agreements):
    pid = _in_review(factory, agreements)
    at = datetime(2018, 7, 2, tzinfo=UTC)
    with transaction(factory) as s:
        assert (
            svc.review(s, pid, reviewer="alice", verdict="approve", reason="grounds ok", at=at)
            == "in_review"
        )
    with pytest.raises(svc.ReviewError, match="different person"), transaction(factory) as s:
        svc.review(s, pid, reviewer="alice", verdict="approve", reason="again", at=at)
    with pytest.raises(svc.ReviewError, match="reason"), transaction(factory) as s:
        svc.review(s, pid, reviewer="bob", verdict="approve", reason="   ", at=at)
    with transaction(factory) as s:
        assert (
            svc.review(s, pid, reviewer="bob", verdict="approve", reason="agree", at=at)
            == "approved"
        )
        assert [r.reviewer for r in s.execute(select(ReviewRow)).scalars()] == ["alice", "bob"]
    with pytest.raises(svc.ReviewError, match="not in review"), transaction(factory) as s:
        svc.review(s, pid, reviewer="carol", verdict="refuse", reason="late", at=at)


def test_one_reviewer_refusal_is_final(factory, agreements):
    pid = _in_review(factory, agreements)
    with transaction(factory) as s:
        assert (
            svc.review(s, pid, reviewer="alice", verdict="refuse", reason="grounds too thin", at=AT)
            == "refused"
        )
    with pytest.raises(IllegalTransition), transaction(factory) as s:
        svc.record_match(s, pid, status="matched", score=0.99, record_id="r1", at=AT)


def test_single_review_then_match_disclose_notify(factory, agreements):
    known = {**POLICE, "subject": {**POLICE["subject"], "known_address": {"postalcode": "SE1 7PB"}}}
    pid = submit(factory, agreements, known).public_id
    with transaction(factory) as s:
        assert (
            svc.review(s, pid, reviewer="alice", verdict="approve", reason="serious", at=AT)
            == "approved"
        )
        assert (
            svc.record_match(s, pid, status="matched", score=0.998, record_id="R42", at=AT)
            == "matched"
        )
    with pytest.raises(svc.MinimisationError, match="gp_practice"), transaction(factory) as s:
        svc.disclose(s, pid, released={"address": "1 Street", "gp_practice": "Y123"}, at=AT)
    with transaction(factory) as s:
        new = svc.disclose(
            s, pid, released={"address": "1 Street", "address-postalcode": "se17pb"}, at=AT
        )
        assert new is False  # the requester already held that postcode
    with pytest.raises(IllegalTransition), transaction(factory) as s:
        svc.disclose(s, pid, released={"address": "1 Street"}, at=AT)
    with transaction(factory) as s:
        assert svc.notify(s, pid, actor="safehaven", at=AT) == "notified"
        assert s.scalar(select(func.count()).select_from(DisclosureRow)) == 1


def test_ambiguous_match_discloses_nothing(factory, agreements):
    pid = submit(factory, agreements, STATUS, at=datetime(2018, 9, 12, tzinfo=UTC)).public_id
    with transaction(factory) as s:
        assert (
            svc.record_match(s, pid, status="ambiguous", score=0.7, record_id=None, at=AT)
            == "no_match"
        )
    with pytest.raises(IllegalTransition), transaction(factory) as s:
        svc.disclose(s, pid, released={"entitlement": "entitled"}, at=AT)


def test_exemption_must_be_allowed_reasoned_and_dated(factory, agreements):
    pid = submit(factory, agreements, POLICE).public_id
    police = agreements.get("nhs-police-tracing")
    with transaction(factory) as s:
        svc.review(s, pid, reviewer="alice", verdict="approve", reason="ok", at=AT)
        svc.record_match(s, pid, status="matched", score=0.99, record_id="R1", at=AT)
        assert svc.disclose(s, pid, released={"address": "2 Road"}, at=AT) is True
    today = AT.date()
    bad = [
        ({"exemption_id": "because"}, "exemption_id"),
        ({"reason": ""}, "reason"),
        ({"review_on": today + timedelta(days=91)}, "review_on"),
        ({"review_on": date(2000, 1, 1)}, "review_on"),
    ]
    for change, field in bad:
        kwargs = {
            "exemption_id": "prejudice-crime-prevention",
            "reason": "live investigation",
            "review_on": today + timedelta(days=30),
            **change,
        }
        with pytest.raises(svc.NotificationError, match=field), transaction(factory) as s:
            svc.exempt(s, pid, police, actor="alice", at=AT, **kwargs)
    with transaction(factory) as s:
        assert (
            svc.exempt(
                s,
                pid,
                police,
                exemption_id="prejudice-crime-prevention",
                reason="live investigation",
                review_on=today + timedelta(days=90),
                actor="alice",
                at=AT,
            )
            == "exempted"
        )


def test_status_check_agreement_allows_no_exemption(factory, agreements):
    pid = submit(factory, agreements, STATUS, at=datetime(2018, 9, 12, tzinfo=UTC)).public_id
    with transaction(factory) as s:
        svc.record_match(s, pid, status="matched", score=0.99, record_id="R9", at=AT)
        assert svc.disclose(s, pid, released={"entitlement": "not_entitled"}, at=AT) is None
    with pytest.raises(svc.NotificationError, match="no exemption"), transaction(factory) as s:
        svc.exempt(
            s,
            pid,
            agreements.get("home-office-status-checks"),
            exemption_id="prejudice-immigration-control",
            reason="x",
            review_on=AT.date(),
            actor="a",
            at=AT,
        )


@pytest.mark.parametrize(
    ("known", "released", "expected"),
    [
        (None, {"address": "1 A St"}, True),
        ({"postalcode": "E1 6AN"}, {"address-postalcode": "E16AN"}, False),
        ({"postalcode": "E1 6AN"}, {"address-postalcode": "N1 9GU"}, True),
        ({"line": "1 A St", "postalcode": "E1 6AN"}, {"address": "1  a st"}, False),
        ({"postalcode": "E1 6AN"}, {"entitlement": "entitled"}, None),
    ],
)
def test_new_information(known, released, expected):
    body = {"subject": {"known_address": known} if known else {}}
    assert svc.is_new_information(body, released) is expected


def test_request_view_has_everything(factory, agreements):
    pid = submit(factory, agreements, POLICE).public_id
    with transaction(factory) as s:
        view = svc.request_view(s, svc.get_request(s, pid))
        listed = svc.list_requests(s, state="in_review", limit=10)
    assert view["state"] == "in_review" and view["decision"]["outcome"] == "needs_review"
    assert [t["to"] for t in view["transitions"]] == ["received", "decided", "in_review"]
    assert [r["id"] for r in listed] == [pid]
    with pytest.raises(svc.NotFoundError), transaction(factory) as s:
        svc.get_request(s, "nope")


def test_concurrent_same_key_submits_create_one_request(factory, agreements):
    """Two agencies' retries racing with the same key: one row, both get its answer."""
    results: list = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker():
        try:
            barrier.wait()
            results.append(submit(factory, agreements, {**POLICE, "request_id": "race-1"}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({r.public_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    with transaction(factory) as s:
        assert s.scalar(select(func.count()).select_from(RequestRow)) == 1


# --- work done before the transaction (svc.prepare) --------------------------------------


def test_prepared_decision_is_rechecked_against_the_firewall_in_force(factory, agreements):
    """A submit prepared under the firewall as last seen (on) but stored after another
    process switched it off is decided under "off": the guess never decides."""
    request = req(NHS_TRACE)
    prepared = svc.prepare(request, agreements, received_at=AT, firewall_on=True)
    assert prepared.decision is not None and prepared.decision.outcome.value == "refused"
    with transaction(factory) as s:
        settings.set_firewall(s, False, actor="caldicott-guardian", reason="test")
    with transaction(factory) as s:
        result = svc.submit(s, request, agreements, received_at=AT, prepared=prepared)
    assert result.outcome == "needs_review" and result.decision["firewall"] == "off"


def test_prepared_decision_is_used_when_it_still_holds(factory, agreements):
    request = req(POLICE)
    prepared = svc.prepare(request, agreements, received_at=AT, firewall_on=True)
    assert prepared.decision is not None
    with transaction(factory) as s:
        result = svc.submit(s, request, agreements, received_at=AT, prepared=prepared)
    assert result.outcome == prepared.decision.outcome.value
    assert result.decision["rules"] == [r.to_dict() for r in prepared.decision.rules]
    with transaction(factory) as s:
        row = s.execute(select(RequestRow).where(RequestRow.public_id == result.public_id)
                        ).scalar_one()
        assert row.body_sha256 == prepared.body_sha


def test_capped_agreements_are_decided_inside_the_transaction(factory, agreements):
    """The monthly cap needs the locked counter, so nothing is decided beforehand."""
    request = req(DFE_TRACE)
    prepared = svc.prepare(request, agreements, received_at=AT, firewall_on=False)
    assert prepared.decision is None
    with transaction(factory) as s:
        settings.set_firewall(s, False, actor="ctl", reason="test")
    with transaction(factory) as s:
        svc.submit(s, request, agreements, received_at=AT, prepared=prepared)
        used = s.execute(select(CapCounterRow.used)).scalar_one()
    assert used == 1


def test_prepared_for_another_request_is_refused(factory, agreements):
    prepared = svc.prepare(req(POLICE), agreements, received_at=AT, firewall_on=True)
    other = req({**POLICE, "request_id": "met-other"})
    with transaction(factory) as s, pytest.raises(ValueError, match="prepared"):
        svc.submit(s, other, agreements, received_at=AT, prepared=prepared)
    with transaction(factory) as s, pytest.raises(ValueError, match="prepared"):
        svc.submit(s, prepared.request, agreements, received_at=AT + timedelta(seconds=1),
                   prepared=prepared)
    with transaction(factory) as s:  # nothing was written by either
        assert s.execute(select(func.count()).select_from(RequestRow)).scalar_one() == 0


def test_prepared_work_that_crossed_to_the_writer_process_is_used(factory, agreements):
    """Under ``serve --workers N`` the request and its prepared work reach the writer
    process as copies: equal, not identical. They are the same request and are used."""
    prepared = svc.prepare(req(POLICE), agreements, received_at=AT, firewall_on=True)
    copy = pickle.loads(pickle.dumps(prepared))
    assert copy.request is not prepared.request and copy.firewall is not prepared.firewall
    with transaction(factory) as s:
        done = svc.submit(s, req(POLICE), agreements, received_at=AT, prepared=copy)
    assert done.created and done.outcome == prepared.decision.outcome == "needs_review"


def test_writers_lock_ledger_before_cap_counter(factory, agreements):
    """A group-commit transaction that has already appended (holding the ledger lock) and
    then submits under a capped agreement, against a lone capped submit: both finish.
    Locking the counter before the ledger in the second would deadlock on PostgreSQL."""
    from safehaven.ledger import log as ledger_log

    if factory.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite has one database lock; no lock order to get wrong")
    at = datetime(2016, 11, 20, tzinfo=UTC)
    with transaction(factory) as s:  # the counter row exists, as after the month's first
        svc.submit(s, req(DFE_TRACE), agreements, received_at=at)
    first_holds_ledger = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction(factory) as s:
                ledger_log.append(s, {"type": "test.earlier-unit"})
                first_holds_ledger.set()
                time.sleep(0.5)  # the other writer reaches its locks meanwhile
                svc.submit(s, req({**DFE_TRACE, "request_id": "a"}), agreements,
                           received_at=at)
        except BaseException as exc:
            errors.append(exc)
            first_holds_ledger.set()

    def second() -> None:
        first_holds_ledger.wait(10)
        try:
            submit(factory, agreements, {**DFE_TRACE, "request_id": "b"}, at=at)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with transaction(factory) as s:
        assert svc.cap_used(s, "dfe-home-office-2016", "2016-11") == 0  # firewall refused all
        assert s.execute(select(func.count()).select_from(RequestRow)).scalar_one() == 3


def test_deferred_steps_are_written_together_and_in_order(factory, agreements):
    """Inside ``deferred_steps`` the use cases' steps wait; another ledger append writes
    them first, so the log keeps the order of events; the rest go at the end."""
    from safehaven.ledger import log as ledger_log
    from safehaven.store.models import LedgerEntryRow

    with transaction(factory) as s:
        start = ledger_log.size(s)
    with transaction(factory) as s, svc.deferred_steps(s):
        first = svc.submit(s, req(body(POLICE, request_id="d1")), agreements, received_at=AT)
        assert ledger_log.size(s) == start  # held back
        ledger_log.append(s, {"type": "test.between"})
        second = svc.submit(s, req(body(POLICE, request_id="d2")), agreements, received_at=AT)
    with transaction(factory) as s:
        events = [json.loads(e)["event"] for e in s.execute(
            select(LedgerEntryRow.event).where(LedgerEntryRow.idx >= start)
            .order_by(LedgerEntryRow.idx)).scalars()]
        steps = s.execute(select(func.count()).select_from(TransitionRow)).scalar_one()
    kinds = [(e.get("request"), e["type"]) for e in events]
    between = kinds.index((None, "test.between"))
    assert {r for r, _ in kinds[:between]} == {first.public_id}
    assert {r for r, _ in kinds[between + 1:]} == {second.public_id}
    assert steps == len(events) - 1  # one transition per request step, all written


def test_deferred_steps_write_nothing_when_the_transaction_fails(factory, agreements):
    with pytest.raises(RuntimeError, match="boom"), transaction(factory) as s, \
            svc.deferred_steps(s):
        svc.submit(s, req(body(POLICE, request_id="x1")), agreements, received_at=AT)
        raise RuntimeError("boom")
    with transaction(factory) as s:
        assert s.execute(select(func.count()).select_from(RequestRow)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(TransitionRow)).scalar_one() == 0


def test_a_replay_in_a_deferred_batch_keeps_the_earlier_units_steps(factory, agreements):
    """A resubmitted key answers with the stored result and queues nothing of its own; the
    steps the batch's earlier submits queued must still be written (a replay once dropped
    them all, committing requests with no transition or ledger entry)."""
    from safehaven.ledger import log as ledger_log

    submit(factory, agreements, body(POLICE, request_id="r-old"))
    with transaction(factory) as s:
        start = ledger_log.size(s)
        steps_before = s.execute(select(func.count()).select_from(TransitionRow)).scalar_one()
    with transaction(factory) as s, svc.deferred_steps(s):
        new = svc.submit(s, req(body(POLICE, request_id="r-new")), agreements, received_at=AT)
        again = svc.submit(s, req(body(POLICE, request_id="r-old")), agreements,
                           received_at=AT)
        assert not again.created
    with transaction(factory) as s:
        row = s.execute(select(RequestRow).where(RequestRow.public_id == new.public_id)
                        ).scalar_one()
        steps = s.execute(select(TransitionRow).where(TransitionRow.request_id == row.id)
                          ).scalars().all()
        assert [t.to_state for t in steps][-1] == row.state
        assert s.execute(select(func.count()).select_from(TransitionRow)).scalar_one() == \
            steps_before + len(steps)
        assert ledger_log.size(s) == start + len(steps)
