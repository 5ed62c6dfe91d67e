"""The request state machine: legal paths work, everything else is rejected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from safehaven.domain.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    Event,
    IllegalTransition,
    State,
    allowed_events,
    transition,
)


def _reachable() -> set[State]:
    seen = {State.RECEIVED}
    frontier = [State.RECEIVED]
    while frontier:
        s = frontier.pop()
        for e in allowed_events(s):
            nxt = transition(s, e)
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def test_every_state_is_reachable_and_terminal_states_are_final():
    assert _reachable() == set(State)
    for s in TERMINAL:
        assert allowed_events(s) == frozenset()
    for s in set(State) - TERMINAL:
        assert allowed_events(s), f"{s} is a dead end but not terminal"


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.RECEIVED, Event.DISCLOSE),  # no disclosure without decision and match
        (State.DECIDED, Event.MATCH),  # no match before approval
        (State.IN_REVIEW, Event.MATCH),  # no match while in review
        (State.APPROVED, Event.DISCLOSE),  # no disclosure without a match
        (State.NO_MATCH, Event.DISCLOSE),  # an ambiguous/no match discloses nothing
        (State.DISCLOSED, Event.DISCLOSE),  # never disclose twice
        (State.REFUSED, Event.APPROVE),  # a refusal is final
        (State.NOTIFIED, Event.EXEMPT),
        (State.EXEMPTED, Event.NOTIFY),  # told only by lifting the exemption, on record
        (State.NOTIFIED, Event.LIFT_EXEMPTION),
        (State.DISCLOSED, Event.RENEW_EXEMPTION),
        (State.MATCHED, Event.NOTIFY),  # notify only after a disclosure
    ],
)
def test_named_illegal_transitions(state, event):
    with pytest.raises(IllegalTransition) as info:
        transition(state, event)
    assert state.value in str(info.value) and event.value in str(info.value)


@given(st.sampled_from(list(State)), st.sampled_from(list(Event)))
def test_transition_is_exactly_the_table(state, event):
    if (state, event) in TRANSITIONS:
        assert transition(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition):
            transition(state, event)


class LifecycleMachine(RuleBasedStateMachine):
    """Drive random event sequences; track what a correct lifecycle must guarantee."""

    def __init__(self) -> None:
        super().__init__()
        self.state = State.RECEIVED
        self.history: list[State] = [State.RECEIVED]
        self.disclosures = 0

    @rule(event=st.sampled_from(list(Event)))
    def apply(self, event: Event) -> None:
        legal = event in allowed_events(self.state)
        try:
            nxt = transition(self.state, event)
        except IllegalTransition:
            assert not legal
            return
        assert legal
        if event is Event.DISCLOSE:
            self.disclosures += 1
        self.state = nxt
        self.history.append(nxt)

    @invariant()
    def never_disclosed_twice(self) -> None:
        assert self.disclosures <= 1

    @invariant()
    def disclosure_only_after_approval_and_match(self) -> None:
        if State.DISCLOSED in self.history:
            i = self.history.index(State.DISCLOSED)
            assert State.APPROVED in self.history[:i]
            assert State.MATCHED in self.history[:i]

    @invariant()
    def refused_never_disclosed(self) -> None:
        if State.REFUSED in self.history:
            assert State.DISCLOSED not in self.history
            assert self.history[-1] is State.REFUSED


TestLifecycleMachine = LifecycleMachine.TestCase
