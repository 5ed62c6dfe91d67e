"""Request use cases: submit, review, record a match, disclose, notify or exempt.

Each function runs inside the caller's transaction and moves the request through
:mod:`safehaven.domain.lifecycle`; a use case either completes with all its rows and
transitions, or (on any exception) the caller's rollback leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Select, Table, bindparam, event, func, insert, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from safehaven.domain.agreement import Agreement
from safehaven.domain.canonical import content_hash
from safehaven.domain.decision import AgreementSet, Decision, Outcome, decide
from safehaven.domain.firewall import DEFAULT_POLICY, FirewallPolicy
from safehaven.domain.lifecycle import Event, State, transition
from safehaven.domain.request import TracingRequest
from safehaven.ledger import log as ledger_log
from safehaven.service import rollup
from safehaven.service.clock import as_utc
from safehaven.service.settings import firewall_enabled
from safehaven.store.models import (
    CapCounterRow,
    DecisionRow,
    DisclosureRow,
    ExemptionReviewRow,
    MatchRow,
    NotificationRow,
    RequestRow,
    ReviewRow,
    TransitionRow,
)

ENGINE_ACTOR = "safehaven"


class NotFoundError(LookupError):
    pass


class IdempotencyConflictError(ValueError):
    """The same idempotency key was used for a different request body."""


class ReviewError(ValueError):
    pass


class MinimisationError(ValueError):
    pass


class NotificationError(ValueError):
    pass


@dataclass(frozen=True)
class SubmitResult:
    public_id: str
    state: str
    outcome: str
    decision: dict[str, Any]
    created: bool
    #: The stored row's primary key, for the caller's follow-up writes in the same unit.
    row_id: int


def request_body(request: TracingRequest) -> dict[str, Any]:
    return request.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(slots=True)
class NewRequest:
    """A request being submitted: its columns as a plain object, not a mapped ``RequestRow``.

    Why: it is inserted with Core (:func:`_insert_request`) and never added to the
    session, and the ORM's attribute instrumentation on construction and on every state
    step cost a sixth of a submit's time inside the write lock.  ``_record`` moves it
    through the state machine like a row; the rollup reads ``agreement_id`` and
    ``received_at``; the transitions insert reads ``id``.
    """

    public_id: str
    requester: str
    request_key: str | None
    agreement_id: str
    purpose: str
    made_on: date
    received_at: datetime
    body: dict[str, Any]
    body_sha256: str
    state: str
    updated_at: datetime
    id: int | None = None


def _record(
    session: Session,
    row: RequestRow | NewRequest,
    event: Event | None,
    actor: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply one lifecycle event (``None`` = creation) and queue its transition row and
    ledger entry; :func:`_write_steps` writes the queue, before the use case returns.

    Returns the ledger entry for the step: ids, hashes and non-personal detail only, so a
    tree head can be published without publishing anyone's data.
    """
    before = None if event is None else State(row.state)
    after = State.RECEIVED if event is None else transition(State(row.state), event)
    row.state = after.value
    row.updated_at = at
    name = event.value if event else "receive"
    entry: dict[str, Any] = {
        "type": "request.transition",
        "request": row.public_id,
        "from": before.value if before else None,
        "to": after.value,
        "event": name,
        "actor": actor,
        "at": as_utc(at).isoformat(),
    }
    if detail:
        entry["detail"] = detail
    transitions: list[tuple[RequestRow | NewRequest, dict[str, Any]]]
    entries: list[dict[str, Any]]
    transitions, entries = session.info.setdefault(_STEPS, ([], []))
    transitions.append((row, {"from_state": entry["from"], "to_state": after.value,
                              "event": name, "actor": actor, "at": at}))
    entries.append(entry)
    return entry


_STEPS = "safehaven.pending_steps"


def queued_steps(session: Session) -> int:
    """How many steps wait in ``session``'s queue (a mark for :func:`drop_steps_after`; the
    group-commit writer also reads it to tell whether a failed unit left any behind)."""
    pending = session.info.get(_STEPS)
    return len(pending[0]) if pending else 0


def drop_steps_after(session: Session, mark: int) -> None:
    """Forget the steps queued since ``mark``, and only those.

    Why not the whole queue: inside :func:`deferred_steps` it also holds the steps of the
    batch's earlier use cases, whose rows are written; dropping them committed requests
    with no transition, ledger entry or statistics count (a resubmitted key in the same
    writer batch as a new request did exactly that).
    """
    pending = session.info.get(_STEPS)
    if pending:
        del pending[0][mark:]
        del pending[1][mark:]


def _write_steps(session: Session) -> None:
    """Write queued transitions, their ledger entries and the report rollup's increments.

    Same transaction as the state change (no step without its entry, no entry without its
    step, no step the published statistics miss or count twice); batching turns a submit's
    three steps into one insert, one ledger append and one rollup upsert.  The rollup goes
    last: the ledger append has locked ``ledger_state``, so rollup row locks are always
    taken under it (see :mod:`safehaven.service.rollup`).
    """
    if session.info.get(_DEFERRED):
        return  # written when the deferral ends (or before any other ledger append)
    _flush_steps(session)


_DEFERRED = "safehaven.defer_steps"


def _flush_steps(session: Session) -> None:
    pending = session.info.pop(_STEPS, None)
    if not pending or not pending[0]:
        return
    transitions, entries = pending
    # Core executemany: the ORM's bulk insert path costs more than the rows it writes.
    session.connection().execute(
        _INSERT_TRANSITIONS,
        [{"request_id": row.id, **values} for row, values in transitions]
    )
    ledger_log.append_many(session, entries)
    rollup.record_steps(session, transitions, entries)


@contextmanager
def deferred_steps(session: Session) -> Iterator[None]:
    """Hold back the steps' writes of several use cases and write them together at the end.

    Why: each use case otherwise writes its steps itself, a transitions insert, a ledger
    append and a rollup upsert per request; a batch of use cases in one transaction (the
    group-commit writer's, or a bulk upload's) then pays those statements once, inside
    the lock every writer waits for.  Nothing reads transitions, the ledger or the rollup
    in between; any other ledger append in the session first writes what is held back
    (``ledger.log.BEFORE_APPEND``), so the log's order is the order of events.  On an
    exception nothing held back is written (the transaction is being rolled back).
    """
    if session.info.get(_DEFERRED):
        yield
        return
    session.info[_DEFERRED] = True
    session.info[ledger_log.BEFORE_APPEND] = _flush_steps
    try:
        yield
    except BaseException:
        session.info.pop(_STEPS, None)
        raise
    finally:
        session.info.pop(_DEFERRED, None)
        session.info.pop(ledger_log.BEFORE_APPEND, None)
    _flush_steps(session)


@event.listens_for(Session, "before_commit")
def _no_unwritten_steps(session: Session) -> None:
    """A use case that forgot :func:`_write_steps` must not commit a state change whose
    transition and ledger entry were never written."""
    if session.in_nested_transaction():  # releasing a savepoint is not the commit
        return
    if session.info.get(_STEPS, ([], []))[0]:
        raise RuntimeError("lifecycle steps queued but not written (call _write_steps)")


def _lock_counter(session: Session, agreement_id: str, month: str) -> CapCounterRow:
    """Create-if-missing then lock the month's counter so concurrent submits serialise.

    The ledger's append lock is taken first (``ledger.log.lock``): every writer then locks
    in one order, ledger before counter, even in a group-commit transaction whose earlier
    units have already appended.
    """
    ledger_log.lock(session)
    dialect = session.get_bind().dialect.name
    values = {"agreement_id": agreement_id, "month": month, "used": 0}
    if dialect == "postgresql":
        session.execute(
            postgresql.insert(CapCounterRow).values(values).on_conflict_do_nothing()
        )
    else:
        session.execute(sqlite.insert(CapCounterRow).values(values).on_conflict_do_nothing())
    counter = session.execute(
        select(CapCounterRow)
        .where(CapCounterRow.agreement_id == agreement_id, CapCounterRow.month == month)
        .with_for_update()
    ).scalar_one()
    session.refresh(counter)
    return counter


@dataclass(frozen=True)
class Prepared:
    """What a submit can work out before its transaction: the canonical body, its hash and
    (unless the agreement caps volume) the decision under the firewall setting last seen.

    Why: every write goes through one writer at a time (SQLite's lock, or the cap
    counter's row lock on PostgreSQL), so whatever a submit computes while holding it
    delays every other agency.  :func:`submit` reuses this only if it still holds inside
    the transaction (same firewall setting, no cap counter to read) and otherwise decides
    again, so the outcome never depends on the guess.
    """

    request: TracingRequest
    received_at: datetime
    body: dict[str, Any]
    body_sha: str
    firewall_on: bool
    firewall: FirewallPolicy
    decision: Decision | None


def prepare(
    request: TracingRequest,
    agreements: AgreementSet,
    *,
    received_at: datetime,
    firewall_on: bool,
    firewall: FirewallPolicy = DEFAULT_POLICY,
) -> Prepared:
    """The part of :func:`submit` that needs no database (pure; call it outside the lock)."""
    body = request_body(request)
    agreement = agreements.get(request.agreement)
    decision = None
    if agreement is None or agreement.volume_cap is None:
        decision = decide(request, agreements, received_on=received_at.date(),
                          firewall_on=firewall_on, firewall=firewall, cap_usage=0)
    return Prepared(request, received_at, body, content_hash(body), firewall_on, firewall,
                    decision)


def submit(
    session: Session,
    request: TracingRequest,
    agreements: AgreementSet,
    *,
    received_at: datetime,
    firewall: FirewallPolicy = DEFAULT_POLICY,
    firewall_on: bool | None = None,
    prepared: Prepared | None = None,
) -> SubmitResult:
    """Record, decide and (unless refused) count a request against its cap.

    Idempotent on ``(requester, request_id)``: the same body returns the stored result, a
    different body raises :class:`IdempotencyConflictError`.  ``prepared`` (from
    :func:`prepare` for this request, time and policy) saves the work done before the
    transaction.
    """
    # Identity first (the usual case, and cheap); equal values when the request crossed to
    # the writer process (``api/writer_process.py``) and arrived as a copy.
    if prepared is not None and (
            (prepared.request is not request and prepared.request != request)
            or prepared.received_at != received_at
            or (prepared.firewall is not firewall and prepared.firewall != firewall)):
        raise ValueError("prepared: made for another request, time or firewall policy")
    if prepared is None:
        body = request_body(request)
        body_sha = content_hash(body)
    else:
        body, body_sha = prepared.body, prepared.body_sha
    # No lookup of the idempotency key first: nearly every key is new, and the unique
    # constraint on (requester, request_key) finds the rest at the INSERT below, which
    # then answers with the stored result (or the conflict).  One query less per submit,
    # inside the lock every writer waits for.

    if firewall_on is None:
        firewall_on = firewall_enabled(session)
    agreement = agreements.get(request.agreement)
    counter = None
    usage = 0
    if agreement is not None and agreement.volume_cap is not None:
        counter = _lock_counter(session, agreement.id, received_at.strftime("%Y-%m"))
        usage = counter.used
    if (prepared is not None and prepared.decision is not None and counter is None
            and prepared.firewall_on == firewall_on):
        decision = prepared.decision
    else:
        decision = decide(
            request,
            agreements,
            received_on=received_at.date(),
            firewall_on=firewall_on,
            firewall=firewall,
            cap_usage=usage,
        )

    # The row is built with its whole first run of steps (received, decided, then refused,
    # in review or approved) before anything is written: one INSERT with the final state,
    # not an INSERT and an UPDATE.
    row = NewRequest(
        public_id=str(uuid.uuid4()),
        requester=request.requester,
        request_key=request.request_id,
        agreement_id=request.agreement,
        purpose=request.purpose,
        made_on=request.made_on,
        received_at=received_at,
        body=body,
        body_sha256=body_sha,
        state=State.RECEIVED.value,
        updated_at=received_at,
    )
    queued = queued_steps(session)
    _record(session, row, None, request.requester, received_at, {
        "requester": request.requester, "agreement": request.agreement,
        "purpose": request.purpose, "made_on": request.made_on.isoformat(),
        "body_sha256": body_sha,
    })
    decision_values = _store_decision(session, row, decision, received_at)
    new_id = _insert_request(session, row)
    if new_id is None:
        # The key was used before (on PostgreSQL possibly by a concurrent submit that
        # committed first): answer with the stored result, or the conflict.
        drop_steps_after(session, queued)  # the steps of the row that was not written
        earlier = _replay(session, request, body_sha)
        if earlier is None:  # pragma: no cover - the conflict names a stored row
            raise RuntimeError("request_id: conflict reported but no stored request found")
        return earlier
    row.id = new_id
    session.connection().execute(_INSERT_DECISION, {**decision_values, "request_id": row.id})
    if counter is not None and decision.outcome is not Outcome.REFUSED:
        counter.used += 1
    _write_steps(session)
    return SubmitResult(public_id=row.public_id, state=row.state,
                        outcome=decision.outcome.value,
                        decision=decision_view(decision_values),
                        created=True, row_id=row.id)


_REQUESTS = cast(Table, RequestRow.__table__)
_DECISIONS = cast(Table, DecisionRow.__table__)
_TRANSITIONS = cast(Table, TransitionRow.__table__)
_REQUEST_COLUMNS = tuple(c.key for c in _REQUESTS.columns if c.key != "id")
# Built once: building a statement and computing its cache key on every submit cost more
# than the driver's work for the row.
_INSERT_DECISION = insert(_DECISIONS)
_INSERT_TRANSITIONS = insert(_TRANSITIONS)
#: INSERT … ON CONFLICT (requester, request_key) DO NOTHING RETURNING id, per dialect: a
#: used idempotency key returns no row instead of raising, so neither a lookup before nor a
#: savepoint around the INSERT is needed.  (A NULL key never conflicts.)
_INSERT_REQUEST = {
    name: dialect_insert(_REQUESTS).on_conflict_do_nothing(
        index_elements=[_REQUESTS.c.requester, _REQUESTS.c.request_key]
    ).returning(_REQUESTS.c.id)
    for name, dialect_insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))
}


def _insert_request(session: Session, row: NewRequest) -> int | None:
    """INSERT the new request with Core, not the ORM unit of work; ``None`` if its
    idempotency key is already stored (the caller then answers with the stored result).

    Why Core: this is the hottest write in the system (every agency call), and a flush of
    two new mapped objects costs several times the SQL it emits.  The request is a plain
    :class:`NewRequest`, never in the session: a later use case in the same transaction
    (``get_request``) selects the stored row, so no half-tracked object can swallow an
    update.
    """
    conn = session.connection()
    values = {key: getattr(row, key) for key in _REQUEST_COLUMNS}
    found = conn.execute(_INSERT_REQUEST[conn.dialect.name], values).scalar_one_or_none()
    return None if found is None else int(found)


_KEY_LOOKUP = select(RequestRow.id, RequestRow.body_sha256).where(
    RequestRow.requester == bindparam("requester"), RequestRow.request_key == bindparam("key"))


def _replay(session: Session, request: TracingRequest, body_sha: str) -> SubmitResult | None:
    """The stored answer for an idempotency key, or ``None`` if the key is new.

    Every keyed submit asks this, and nearly every answer is "new": two columns from a
    prebuilt statement, and the whole row only on a real replay.
    """
    found = session.connection().execute(
        _KEY_LOOKUP, {"requester": request.requester, "key": request.request_id}).first()
    if found is None:
        return None
    if found.body_sha256 != body_sha:
        raise IdempotencyConflictError(
            f"request_id: {request.request_id!r} was already used for a different request"
        )
    existing = session.get(RequestRow, found.id)
    assert existing is not None
    return _result(existing, created=False)


def _store_decision(
    session: Session, row: NewRequest, decision: Decision, at: datetime
) -> dict[str, Any]:
    """Queue the decision's steps on ``row``; return the decision row's column values."""
    ref = decision.agreement
    values = {
        "outcome": decision.outcome.value,
        "rules": [r.to_dict() for r in decision.rules],
        "agreement_id": ref.id if ref else None,
        "agreement_version": ref.version if ref else None,
        "agreement_sha256": ref.sha256 if ref else None,
        "firewall_on": decision.firewall_on,
        "reviewers_required": decision.reviewers_required,
        "permitted_fields": list(decision.permitted_fields),
        "decided_at": at,
    }
    _record(session, row, Event.DECIDE, ENGINE_ACTOR, at, {
        "outcome": decision.outcome.value,
        "agreement": ref.to_dict() if ref else None,
        "firewall": "on" if decision.firewall_on else "off",
        "rules": values["rules"],
        "cap_month": decision.cap_month,
    })
    follow = {
        Outcome.REFUSED: Event.REFUSE,
        Outcome.NEEDS_REVIEW: Event.SEND_TO_REVIEW,
        Outcome.APPROVED: Event.APPROVE,
    }[decision.outcome]
    _record(session, row, follow, ENGINE_ACTOR, at)
    return values


def _decision_dict(row: DecisionRow) -> dict[str, Any]:
    return decision_view({key: getattr(row, key) for key in DECISION_VIEW_COLUMNS})


def decision_view(values: Mapping[str, Any]) -> dict[str, Any]:
    """A decision as the API shows it, from its column values (a stored row's, or those
    of the row a submit has just inserted, without building a mapped object for it)."""
    rules = values["rules"]
    return {
        "outcome": values["outcome"],
        "rules": rules,
        "refused_by": [r["id"] for r in rules if not r["passed"]],
        "agreement": (
            {"id": values["agreement_id"], "version": values["agreement_version"],
             "sha256": values["agreement_sha256"]}
            if values["agreement_id"] else None
        ),
        "firewall": "on" if values["firewall_on"] else "off",
        "reviewers_required": values["reviewers_required"],
        "permitted_fields": values["permitted_fields"],
    }


def _result(row: RequestRow, *, created: bool) -> SubmitResult:
    assert row.decision is not None
    return SubmitResult(
        public_id=row.public_id,
        state=row.state,
        outcome=row.decision.outcome,
        decision=_decision_dict(row.decision),
        created=created,
        row_id=row.id,
    )


_BY_PUBLIC_ID = "safehaven.requests_by_public_id"


def _remember(session: Session, row: RequestRow) -> None:
    session.info.setdefault(_BY_PUBLIC_ID, {})[row.public_id] = row


def get_request(session: Session, public_id: str) -> RequestRow:
    """The request row; rows this session already holds are reused (no query).

    A use case such as tracing calls several others on one row in one transaction; each
    would otherwise re-select the row it was just handed.
    """
    known = session.info.get(_BY_PUBLIC_ID, {}).get(public_id)
    if known is not None and known in session:
        return known  # type: ignore[no-any-return]
    row = session.execute(
        select(RequestRow).where(RequestRow.public_id == public_id)
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"request {public_id!r} not found")
    _remember(session, row)
    return row


def approvals_needed(row: RequestRow) -> int:
    """How many more approvals, from reviewers who have not yet reviewed it, the request
    needs before it is approved; 0 unless it is in review."""
    if row.state != State.IN_REVIEW.value:
        return 0
    approvals = sum(1 for r in row.reviews if r.verdict == "approve")
    required = row.decision.reviewers_required if row.decision else 0
    return max(0, required - approvals)


def review(
    session: Session,
    public_id: str,
    *,
    reviewer: str,
    verdict: Literal["approve", "refuse"],
    reason: str,
    at: datetime,
) -> str:
    """Record one reviewer's verdict; four-eyes needs two different people to approve."""
    if not reason.strip():
        raise ReviewError("reason: a written reason is required for every review")
    if verdict not in ("approve", "refuse"):
        raise ReviewError("verdict: must be 'approve' or 'refuse'")
    row = get_request(session, public_id)
    if row.state != State.IN_REVIEW.value:
        raise ReviewError(f"request is {row.state}, not in review")
    if any(r.reviewer == reviewer for r in row.reviews):
        raise ReviewError(
            f"reviewer {reviewer!r} has already reviewed this request; a second approval must "
            "come from a different person"
        )
    # Appended to the collection (not merely added to the session) so a later review in
    # the same session sees this one: four-eyes counts must never read a stale list.
    row.reviews.append(ReviewRow(request_id=row.id, reviewer=reviewer, verdict=verdict,
                                 reason=reason.strip(), reviewed_at=at))
    detail = {"verdict": verdict, "reason_sha256": content_hash(reason.strip())}
    if verdict == "refuse":
        _record(session, row, Event.REVIEW_REFUSE, reviewer, at, detail)
    else:
        approvals = sum(1 for r in row.reviews if r.verdict == "approve")
        required = row.decision.reviewers_required if row.decision else 1
        event = Event.APPROVE if approvals >= required else Event.REVIEW_APPROVE
        _record(session, row, event, reviewer, at, detail)
    _write_steps(session)
    session.flush()
    return row.state


MatchStatus = Literal["matched", "ambiguous", "no_match"]


def record_match(
    session: Session,
    public_id: str,
    *,
    status: MatchStatus,
    score: float | None,
    record_id: str | None,
    at: datetime,
) -> str:
    """Record the matcher's verdict; anything but a unique, confident match discloses nothing."""
    row = get_request(session, public_id)
    if status == "matched" and record_id is None:
        raise ValueError("record_id: a match must name the register record")
    event = Event.MATCH if status == "matched" else Event.NO_MATCH
    _record(session, row, event, ENGINE_ACTOR, at, {
        "status": status, "score": score,
        "record_sha256": content_hash(record_id) if record_id else None,
    })
    session.add(MatchRow(request_id=row.id, status=status, score=score,
                         record_id=record_id if status == "matched" else None, matched_at=at))
    _write_steps(session)
    session.flush()
    return row.state


def _norm_postcode(value: str | None) -> str | None:
    return value.replace(" ", "").upper() if value else None


def is_new_information(body: dict[str, Any], released: dict[str, Any]) -> bool | None:
    """Did the disclosure tell the requester an address it did not already hold?

    ``None`` when no address was released (a status check), so such answers are not
    counted either way.
    """
    if "address" not in released and "address-postalcode" not in released:
        return None
    known = body.get("subject", {}).get("known_address")
    if not known:
        return True
    if "address-postalcode" in released:
        return _norm_postcode(released["address-postalcode"]) != _norm_postcode(
            known.get("postalcode")
        )
    line = known.get("line")
    return line is None or " ".join(str(released["address"]).lower().split()) != " ".join(
        line.lower().split()
    )


def disclose(
    session: Session, public_id: str, *, released: dict[str, Any], at: datetime
) -> bool | None:
    """Record what was released, refusing anything outside the decision's permitted fields."""
    row = get_request(session, public_id)
    assert row.decision is not None
    outside = sorted(set(released) - set(row.decision.permitted_fields))
    if outside:
        raise MinimisationError(f"fields: not permitted by the decision: {outside}")
    new = is_new_information(row.body, released)
    _record(session, row, Event.DISCLOSE, ENGINE_ACTOR, at, {
        "fields": sorted(released), "released_sha256": content_hash(released),
        "new_information": new,
    })
    session.add(DisclosureRow(request_id=row.id, fields=released, new_information=new,
                              disclosed_at=at))
    _write_steps(session)
    session.flush()
    return new


def notify(session: Session, public_id: str, *, actor: str, at: datetime) -> str:
    row = get_request(session, public_id)
    _record(session, row, Event.NOTIFY, actor, at)
    session.add(NotificationRow(request_id=row.id, kind="notified", recorded_by=actor,
                                recorded_at=at))
    _write_steps(session)
    session.flush()
    return row.state


def exempt(
    session: Session,
    public_id: str,
    agreement: Agreement,
    *,
    exemption_id: str,
    reason: str,
    review_on: date,
    actor: str,
    at: datetime,
) -> str:
    """Record that the subject is not told, under an exemption the agreement allows."""
    row = get_request(session, public_id)
    if agreement.id != row.agreement_id:
        raise NotificationError("agreement: not the agreement this request was decided under")
    if agreement.notification.rule == "notify":
        raise NotificationError("exemption_id: this agreement allows no exemption from notice")
    allowed = {e.id: e for e in agreement.notification.exemptions}
    if exemption_id not in allowed:
        raise NotificationError(
            f"exemption_id: {exemption_id!r} is not allowed; allowed: {sorted(allowed)}"
        )
    if not reason.strip():
        raise NotificationError("reason: an exemption needs a written reason")
    latest = as_utc(at).date() + timedelta(days=allowed[exemption_id].review_after_days)
    if review_on > latest or review_on < as_utc(at).date():
        raise NotificationError(
            f"review_on: must be between today and {latest.isoformat()} for this exemption"
        )
    _record(session, row, Event.EXEMPT, actor, at, {
        "exemption": exemption_id, "review_on": review_on.isoformat(),
        "reason_sha256": content_hash(reason.strip()),
    })
    session.add(NotificationRow(request_id=row.id, kind="exempted", exemption_id=exemption_id,
                                reason=reason.strip(), review_on=review_on, recorded_by=actor,
                                recorded_at=at))
    _exemption_history(session, row.id, "recorded", exemption_id, reason, review_on, actor, at)
    _write_steps(session)
    session.flush()
    return row.state


def _exemption_history(session: Session, request_id: int, action: str,
                       exemption_id: str | None, reason: str, review_on: date | None,
                       actor: str, at: datetime) -> None:
    """Keep the words of each exemption decision (``store.models.ExemptionReviewRow``);
    the ledger entry of the same step carries their hash."""
    session.add(ExemptionReviewRow(request_id=request_id, action=action,
                                   exemption_id=exemption_id, reason=reason.strip(),
                                   review_on=review_on, actor=actor, at=at))


def exemption_history(session: Session, request_ids: Sequence[int]
                      ) -> dict[int, list[dict[str, Any]]]:
    """Each request's exemption decisions, oldest first (one query for any number)."""
    found: dict[int, list[dict[str, Any]]] = {i: [] for i in request_ids}
    if request_ids:
        for r in session.execute(_EXEMPTIONS_OF, {_IDS: list(request_ids)}).scalars():
            found[r.request_id].append({
                "action": r.action, "exemption_id": r.exemption_id, "reason": r.reason,
                "review_on": r.review_on.isoformat() if r.review_on else None,
                "by": r.actor, "at": as_utc(r.at).isoformat()})
    return found


#: Statements of the reviewer's and auditor's pages, built once with an expanding parameter
#: for the page's request ids: building and cache-keying them per call cost about as much
#: as running them.
_IDS = "ids"
_EXEMPTIONS_OF = (select(ExemptionReviewRow)
                  .where(ExemptionReviewRow.request_id.in_(bindparam(_IDS, expanding=True)))
                  .order_by(ExemptionReviewRow.id))
_TRANSITIONS_OF = (select(TransitionRow)
                   .where(TransitionRow.request_id.in_(bindparam(_IDS, expanding=True)))
                   .order_by(TransitionRow.id))
_DECISIONS_OF = select(DecisionRow).where(
    DecisionRow.request_id.in_(bindparam(_IDS, expanding=True)))
_REVIEWS_OF = (select(ReviewRow).where(ReviewRow.request_id.in_(bindparam(_IDS, expanding=True)))
               .order_by(ReviewRow.id))


def _exemption_row(session: Session, row: RequestRow) -> NotificationRow:
    if row.state != State.EXEMPTED.value:
        raise NotificationError(f"state: the request is {row.state}, not exempted from notice")
    found = session.execute(
        select(NotificationRow).where(NotificationRow.request_id == row.id)
    ).scalar_one()
    return found


def renew_exemption(
    session: Session,
    public_id: str,
    agreement: Agreement,
    *,
    reason: str,
    review_on: date,
    actor: str,
    at: datetime,
) -> date:
    """Keep an exemption from notice for a further period, with a fresh written reason.

    The same limit as when it was recorded: the new review date is at most the
    exemption's ``review_after_days`` from today, so an exemption cannot be parked for
    years by one decision.  The notification row keeps the latest reason and date; every
    renewal is a transition and a ledger entry (with the reason's hash).
    """
    row = get_request(session, public_id)
    notice = _exemption_row(session, row)
    allowed = {e.id: e for e in agreement.notification.exemptions}
    exemption = allowed.get(notice.exemption_id or "")
    if agreement.id != row.agreement_id or exemption is None:
        raise NotificationError(
            f"exemption_id: {notice.exemption_id!r} is no longer allowed by the agreement; "
            "lift the exemption instead")
    if not reason.strip():
        raise NotificationError("reason: a renewal needs a written reason")
    today = as_utc(at).date()
    latest = today + timedelta(days=exemption.review_after_days)
    if review_on > latest or review_on <= today:
        raise NotificationError(
            f"review_on: must be after today and no later than {latest.isoformat()}")
    _record(session, row, Event.RENEW_EXEMPTION, actor, at, {
        "exemption": notice.exemption_id, "review_on": review_on.isoformat(),
        "previous_review_on": notice.review_on.isoformat() if notice.review_on else None,
        "reason_sha256": content_hash(reason.strip()),
    })
    notice.reason = reason.strip()
    notice.review_on = review_on
    notice.recorded_by = actor
    notice.recorded_at = at
    _exemption_history(session, row.id, "renewed", notice.exemption_id, reason, review_on,
                       actor, at)
    _write_steps(session)
    session.flush()
    return review_on


def lift_exemption(
    session: Session, public_id: str, *, reason: str, actor: str, at: datetime
) -> NotificationRow:
    """End an exemption: the person is to be told now (the caller queues the notice).

    The notification row becomes ``notified`` but keeps the exemption's id, so a report
    can tell a late notice from a timely one; the ledger has the whole history.
    """
    row = get_request(session, public_id)
    notice = _exemption_row(session, row)
    if not reason.strip():
        raise NotificationError("reason: lifting an exemption needs a written reason")
    _record(session, row, Event.LIFT_EXEMPTION, actor, at, {
        "exemption": notice.exemption_id, "reason_sha256": content_hash(reason.strip()),
    })
    notice.kind = "notified"
    notice.reason = reason.strip()
    notice.review_on = None
    notice.recorded_by = actor
    notice.recorded_at = at
    _exemption_history(session, row.id, "lifted", notice.exemption_id, reason, None, actor, at)
    _write_steps(session)
    session.flush()
    return notice


def cap_used(session: Session, agreement_id: str, month: str) -> int:
    value = session.execute(
        select(func.coalesce(func.max(CapCounterRow.used), 0)).where(
            CapCounterRow.agreement_id == agreement_id, CapCounterRow.month == month
        )
    ).scalar_one()
    return int(value)


def request_summary(row: RequestRow) -> dict[str, Any]:
    """Who asked, under what, when, where it stands, and the engine's decision: the part of
    a request every audience (agency, reviewer, auditor) sees the same way."""
    return summary_of(row, _decision_dict(row.decision) if row.decision else None)


def summary_of(row: Any, decision: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`request_summary` from anything with a request's column attributes: a mapped
    row, or a Core result row of the same names (``api.views`` reads an agency's page
    that way, without building mapped objects)."""
    return {
        "id": row.public_id,
        "request_id": row.request_key,
        "requester": row.requester,
        "agreement": row.agreement_id,
        "purpose": row.purpose,
        "made_on": row.made_on.isoformat(),
        "received_at": as_utc(row.received_at).isoformat(),
        "state": row.state,
        "decision": decision,
    }


#: The decision columns :func:`decision_view` reads, in a stored row or a mapping.
DECISION_VIEW_COLUMNS = ("outcome", "rules", "agreement_id", "agreement_version",
                         "agreement_sha256", "firewall_on", "reviewers_required",
                         "permitted_fields")


def request_view(session: Session, row: RequestRow) -> dict[str, Any]:
    """Everything stored about one request, as plain JSON-able data."""
    return request_views(session, [row])[0]


def request_views(session: Session, rows: Sequence[RequestRow]) -> list[dict[str, Any]]:
    """:func:`request_view` for many requests in three queries, whatever their number.

    Why: a reviewer's queue shows fifty requests, each with its decision, reviews and
    lifecycle; loading them row by row cost three queries a request (most of a queue
    call's time).  Decisions and reviews come in with one ``IN`` query each (SQLAlchemy's
    ``selectinload``), transitions with another.
    """
    if not rows:
        return []
    ids = [r.id for r in rows]
    load_related(session, rows)
    steps: dict[int, list[TransitionRow]] = {i: [] for i in ids}
    for t in session.execute(_TRANSITIONS_OF, {_IDS: ids}).scalars():
        steps[t.request_id].append(t)
    return [{
        **request_summary(row),
        "reviews": [
            {"reviewer": r.reviewer, "verdict": r.verdict, "reason": r.reason,
             "at": as_utc(r.reviewed_at).isoformat()}
            for r in row.reviews
        ],
        "transitions": [
            {"from": t.from_state, "to": t.to_state, "event": t.event, "actor": t.actor,
             "at": as_utc(t.at).isoformat()}
            for t in steps[row.id]
        ],
    } for row in rows]


def load_related(session: Session, rows: Sequence[RequestRow]) -> None:
    """Load the decisions and reviews of ``rows`` with one query each, not one per row.

    The related rows are selected by request id and attached as already loaded
    (``set_committed_value``) rather than by selecting the requests again with
    ``selectinload``, which would decode every request's JSON body a second time.  A single
    row is left to lazy loading, which costs the same number of queries.
    """
    need_decision = [r for r in rows if "decision" in inspect(r).unloaded]
    need_reviews = [r for r in rows if "reviews" in inspect(r).unloaded]
    if len(need_decision) > 1:
        found = {d.request_id: d for d in session.execute(
            _DECISIONS_OF, {_IDS: [r.id for r in need_decision]}).scalars()}
        for r in need_decision:
            set_committed_value(r, "decision", found.get(r.id))
    if len(need_reviews) > 1:
        by_request: dict[int, list[ReviewRow]] = {r.id: [] for r in need_reviews}
        for review_row in session.execute(_REVIEWS_OF, {_IDS: list(by_request)}).scalars():
            by_request[review_row.request_id].append(review_row)
        for r in need_reviews:
            set_committed_value(r, "reviews", by_request[r.id])


def review_queue(limit: int) -> Select[RequestRow]:
    """Requests waiting for a reviewer, oldest first.

    Why a statement of its own: ``ix_requests_state_received`` (0009) answers it in index
    order, so a page costs ``limit`` rows however long the queue has grown; with only the
    state index every page sorted the whole queue (tests/store/test_query_plans.py).
    """
    return (select(RequestRow).where(RequestRow.state == State.IN_REVIEW.value)
            .order_by(RequestRow.received_at, RequestRow.id).limit(limit))


def list_requests(session: Session, *, state: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(RequestRow).order_by(RequestRow.id.desc()).limit(limit)
    if state:
        query = query.where(RequestRow.state == state)
    return [
        {"id": r.public_id, "requester": r.requester, "agreement": r.agreement_id,
         "purpose": r.purpose, "made_on": r.made_on.isoformat(), "state": r.state}
        for r in session.execute(query).scalars()
    ]
