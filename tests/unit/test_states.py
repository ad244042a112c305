"""Every (from, to) pair of each state table: allowed ones pass, all others raise."""

from __future__ import annotations

import itertools
from enum import Enum

import pytest
from buildcontrol_server.domain.states import (
    BUILD_TRANSITIONS,
    JOB_TRANSITIONS,
    STEP_TRANSITIONS,
    TERMINAL_BUILD,
    TERMINAL_JOB,
    TERMINAL_STEP,
    BuildStatus,
    IllegalTransition,
    JobStatus,
    StepStatus,
    transition,
)

TABLES: list[tuple[type[Enum], frozenset[tuple[Enum, Enum]], frozenset[Enum]]] = [
    (BuildStatus, BUILD_TRANSITIONS, TERMINAL_BUILD),  # type: ignore[list-item]
    (JobStatus, JOB_TRANSITIONS, TERMINAL_JOB),  # type: ignore[list-item]
    (StepStatus, STEP_TRANSITIONS, TERMINAL_STEP),  # type: ignore[list-item]
]

ALL_PAIRS = [
    pytest.param(current, target, (current, target) in table, id=f"{current.value}->{target.value}")
    for status, table, _ in TABLES
    for current, target in itertools.product(status, repeat=2)
]


@pytest.mark.parametrize(("current", "target", "allowed"), ALL_PAIRS)
def test_every_pair_of_every_table(current: Enum, target: Enum, allowed: bool) -> None:
    if allowed:
        assert transition("x", current, target) is target  # type: ignore[type-var]
    else:
        with pytest.raises(IllegalTransition):
            transition("x", current, target)  # type: ignore[type-var]


def test_the_tables_are_exactly_the_documented_moves() -> None:
    # A change to a table must be a conscious one: this count changes with it.
    assert (len(BUILD_TRANSITIONS), len(JOB_TRANSITIONS), len(STEP_TRANSITIONS)) == (7, 10, 7)


@pytest.mark.parametrize(("status", "table", "terminal"), TABLES)
def test_terminal_states_never_change(
    status: type[Enum], table: frozenset[tuple[Enum, Enum]], terminal: frozenset[Enum]
) -> None:
    assert terminal, "every entity has terminal states"
    for current, _ in table:
        assert current not in terminal


def test_statuses_of_different_entities_do_not_mix() -> None:
    with pytest.raises(IllegalTransition):
        transition("x", BuildStatus.QUEUED, JobStatus.ASSIGNED)  # type: ignore[type-var]


def test_every_non_terminal_state_can_end() -> None:
    """No state is a dead end: from each non-terminal one a terminal one is reachable."""
    for status, table, terminal in TABLES:
        for start in status:
            seen, frontier = {start}, [start]
            while frontier:
                current = frontier.pop()
                for a, b in table:
                    if a is current and b not in seen:
                        seen.add(b)
                        frontier.append(b)
            assert seen & terminal, f"{start} cannot reach a terminal state"
