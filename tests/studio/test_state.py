"""The sandbox state table, its guard and the paths through it."""

from __future__ import annotations

import itertools

import pytest

from studio.errors import InvalidState
from studio.state import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    SandboxState,
    check_transition,
    transition_path,
)

S = SandboxState
PAIRS = list(itertools.product(SandboxState, repeat=2))


def reachable(start: SandboxState) -> set[SandboxState]:
    seen, todo = {start}, [start]
    while todo:
        for step in TRANSITIONS[todo.pop()]:
            if step not in seen:
                seen.add(step)
                todo.append(step)
    return seen


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=lambda s: s.value)
def test_the_guard_accepts_exactly_the_pairs_of_the_table(
    current: SandboxState, target: SandboxState
) -> None:
    if target in TRANSITIONS[current]:
        check_transition(current, target)
        check_transition(current, target, sandbox_id="sb_abc123")
        return
    with pytest.raises(InvalidState) as refused:
        check_transition(current, target, sandbox_id="sb_abc123")
    message = str(refused.value)
    assert f"sandbox sb_abc123 cannot go from {current.value} to {target.value}" in message
    assert refused.value.details == {
        "state": current.value,
        "target": target.value,
        "sandbox_id": "sb_abc123",
    }


def test_the_table_has_a_row_for_every_state_and_no_state_goes_to_itself() -> None:
    assert set(TRANSITIONS) == set(SandboxState)
    for state, targets in TRANSITIONS.items():
        assert state not in targets, state


def test_terminal_states_are_exactly_those_without_a_way_out() -> None:
    assert {s for s, targets in TRANSITIONS.items() if not targets} == TERMINAL_STATES
    assert {S.STOPPED, S.FINALIZED} == TERMINAL_STATES
    for ended, target in itertools.product(TERMINAL_STATES, SandboxState):
        with pytest.raises(InvalidState, match="it has ended"):
            check_transition(ended, target)


def test_active_states_are_live_and_each_can_stop_or_fail() -> None:
    assert not ACTIVE_STATES & TERMINAL_STATES
    assert {S.PENDING, S.STOPPING, S.FAILED}.isdisjoint(ACTIVE_STATES)
    for state in ACTIVE_STATES:
        assert {S.STOPPING, S.FAILED} <= TRANSITIONS[state], state


def test_every_state_is_reached_from_pending_and_only_a_new_sandbox_is_pending() -> None:
    assert reachable(S.PENDING) == set(SandboxState)
    assert all(S.PENDING not in targets for targets in TRANSITIONS.values())


def test_every_state_that_has_not_ended_can_end() -> None:
    # Nothing waits forever: from any state a teardown can finish.
    for state in set(SandboxState) - TERMINAL_STATES:
        assert reachable(state) >= TERMINAL_STATES, state


def test_a_teardown_and_a_finalize_pass_through_stopping() -> None:
    entering = {s for s, targets in TRANSITIONS.items() if targets & TERMINAL_STATES}
    assert entering == {S.STOPPING}


@pytest.mark.parametrize(
    ("current", "target", "steps"),
    [
        (S.RUNNING, S.RUNNING, ()),
        (S.PENDING, S.RUNNING, (S.STARTING, S.RUNNING)),
        (S.RUNNING, S.STOPPED, (S.STOPPING, S.STOPPED)),
        (S.RESTARTING, S.FINALIZED, (S.STOPPING, S.FINALIZED)),
        (S.FAILED, S.STOPPED, (S.STOPPING, S.STOPPED)),
        (S.FAILED, S.RUNNING, (S.STARTING, S.RUNNING)),
        (S.STARTING, S.RESTARTING, (S.RUNNING, S.RESTARTING)),
        (S.STOPPING, S.STOPPED, (S.STOPPED,)),
        (S.RUNNING, S.FAILED, (S.FAILED,)),
    ],
)
def test_transition_path_takes_the_shortest_run_of_legal_steps(
    current: SandboxState, target: SandboxState, steps: tuple[SandboxState, ...]
) -> None:
    assert transition_path(current, target) == steps


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.STARTING, S.PENDING),  # a report from before the setup began
        (S.RUNNING, S.PENDING),
        (S.STOPPED, S.RUNNING),  # an ended sandbox stays ended
        (S.FINALIZED, S.STOPPED),
        (S.STOPPED, S.FINALIZED),
        (S.STOPPING, S.RUNNING),  # only through FAILED, which nobody reported
        (S.STOPPING, S.STARTING),
    ],
)
def test_transition_path_refuses_what_lies_behind_or_would_invent_a_failure(
    current: SandboxState, target: SandboxState
) -> None:
    with pytest.raises(InvalidState, match=f"sb_abc123 cannot get from {current.value}"):
        transition_path(current, target, sandbox_id="sb_abc123")


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=lambda s: s.value)
def test_every_path_is_a_chain_of_legal_steps_through_no_failure(
    current: SandboxState, target: SandboxState
) -> None:
    try:
        steps = transition_path(current, target)
    except InvalidState:
        assert current is not target and target not in TRANSITIONS[current]
        return
    chain = (current, *steps)
    for before, after in itertools.pairwise(chain):
        check_transition(before, after)
    assert S.FAILED not in steps[:-1]
    if current is target:
        assert steps == ()
    elif target in TRANSITIONS[current]:
        assert steps == (target,)
