"""The request lifecycle as an explicit state machine.

Every state change of a request goes through :func:`transition`, so "disclosed twice" or
"disclosed without a match" is not a bug to look for in each use case but an
:class:`IllegalTransition` that cannot get past this module.  Each accepted transition is
one ledger entry.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    RECEIVED = "received"
    DECIDED = "decided"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    MATCHED = "matched"
    NO_MATCH = "no_match"
    DISCLOSED = "disclosed"
    REFUSED = "refused"
    NOTIFIED = "notified"
    EXEMPTED = "exempted"


class Event(StrEnum):
    DECIDE = "decide"
    REFUSE = "refuse"
    SEND_TO_REVIEW = "send_to_review"
    REVIEW_APPROVE = "review_approve"
    REVIEW_REFUSE = "review_refuse"
    APPROVE = "approve"
    MATCH = "match"
    NO_MATCH = "no_match"
    DISCLOSE = "disclose"
    NOTIFY = "notify"
    EXEMPT = "exempt"
    RENEW_EXEMPTION = "renew_exemption"
    LIFT_EXEMPTION = "lift_exemption"


#: (state, event) -> next state.  Anything absent is illegal.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.RECEIVED, Event.DECIDE): State.DECIDED,
    (State.DECIDED, Event.REFUSE): State.REFUSED,
    (State.DECIDED, Event.SEND_TO_REVIEW): State.IN_REVIEW,
    (State.DECIDED, Event.APPROVE): State.APPROVED,
    # A first reviewer's approval under four-eyes keeps the request in review.
    (State.IN_REVIEW, Event.REVIEW_APPROVE): State.IN_REVIEW,
    (State.IN_REVIEW, Event.APPROVE): State.APPROVED,
    (State.IN_REVIEW, Event.REVIEW_REFUSE): State.REFUSED,
    (State.APPROVED, Event.MATCH): State.MATCHED,
    (State.APPROVED, Event.NO_MATCH): State.NO_MATCH,
    (State.MATCHED, Event.DISCLOSE): State.DISCLOSED,
    (State.DISCLOSED, Event.NOTIFY): State.NOTIFIED,
    (State.DISCLOSED, Event.EXEMPT): State.EXEMPTED,
    # An exemption from notice is reviewed by its date: kept (with a new date and reason)
    # or lifted, and then the person is told after all.
    (State.EXEMPTED, Event.RENEW_EXEMPTION): State.EXEMPTED,
    (State.EXEMPTED, Event.LIFT_EXEMPTION): State.NOTIFIED,
}

#: States with no way out.  ``exempted`` is not one: nothing more is disclosed, but
#: whether to tell the person stays open until the exemption is lifted.  (Reports count it
#: as settled, not pending: ``service.reports``.)
TERMINAL: frozenset[State] = frozenset({State.REFUSED, State.NO_MATCH, State.NOTIFIED})


class IllegalTransition(Exception):
    def __init__(self, state: State, event: Event) -> None:
        self.state = state
        self.event = event
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is state)
        super().__init__(
            f"cannot {event.value!r} a request in state {state.value!r}"
            + (f" (allowed: {', '.join(allowed)})" if allowed else " (it is final)")
        )


def transition(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def allowed_events(state: State) -> frozenset[Event]:
    return frozenset(e for (s, e) in TRANSITIONS if s is state)
