"""Statuses of builds, jobs and steps, and the one table of allowed moves for each.

The tables are the contract: `transition()` accepts exactly the pairs listed and raises
`IllegalTransition` for every other, terminal states included. docs/cancel-semantics.md
is generated from these tables (`tools/docs/state_tables.py`, `make docs`).
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import TypeVar


class BuildStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"


class JobStatus(StrEnum):
    PENDING = "PENDING"
    ASSIGNED = "ASSIGNED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPING = "STOPPING"
    CANCELED = "CANCELED"
    SKIPPED = "SKIPPED"


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPING = "STOPPING"
    CANCELED = "CANCELED"
    SKIPPED = "SKIPPED"


class JobOutcome(StrEnum):
    """How a cancelled job ended (or that its agent was lost: then the job FAILED)."""

    GRACEFUL = "GRACEFUL"
    KILLED = "KILLED"
    FORCED = "FORCED"
    NEVER_STARTED = "NEVER_STARTED"
    LOST = "LOST"


BUILD_TRANSITIONS: frozenset[tuple[BuildStatus, BuildStatus]] = frozenset(
    {
        (BuildStatus.QUEUED, BuildStatus.RUNNING),
        (BuildStatus.RUNNING, BuildStatus.SUCCEEDED),
        (BuildStatus.RUNNING, BuildStatus.FAILED),
        (BuildStatus.QUEUED, BuildStatus.CANCELING),
        (BuildStatus.RUNNING, BuildStatus.CANCELING),
        (BuildStatus.CANCELING, BuildStatus.CANCELED),
        # A QUEUED build with no job on an agent needs nobody to stop anything.
        (BuildStatus.QUEUED, BuildStatus.CANCELED),
    }
)

JOB_TRANSITIONS: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    {
        (JobStatus.PENDING, JobStatus.ASSIGNED),
        (JobStatus.ASSIGNED, JobStatus.RUNNING),
        (JobStatus.RUNNING, JobStatus.SUCCEEDED),
        (JobStatus.RUNNING, JobStatus.FAILED),
        # The agent holding the job was lost (gone past its reconnect window, or it
        # reconnected without the job): the job cannot have finished as reported.
        (JobStatus.ASSIGNED, JobStatus.FAILED),
        (JobStatus.PENDING, JobStatus.CANCELED),
        (JobStatus.ASSIGNED, JobStatus.STOPPING),
        (JobStatus.RUNNING, JobStatus.STOPPING),
        (JobStatus.STOPPING, JobStatus.CANCELED),
        # An earlier stage failed: the job never runs.
        (JobStatus.PENDING, JobStatus.SKIPPED),
    }
)

STEP_TRANSITIONS: frozenset[tuple[StepStatus, StepStatus]] = frozenset(
    {
        (StepStatus.PENDING, StepStatus.RUNNING),
        (StepStatus.RUNNING, StepStatus.SUCCEEDED),
        (StepStatus.RUNNING, StepStatus.FAILED),
        (StepStatus.PENDING, StepStatus.CANCELED),
        (StepStatus.RUNNING, StepStatus.STOPPING),
        (StepStatus.STOPPING, StepStatus.CANCELED),
        (StepStatus.PENDING, StepStatus.SKIPPED),
    }
)

TERMINAL_BUILD = frozenset({BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELED})
TERMINAL_JOB = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SKIPPED}
)
TERMINAL_STEP = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELED, StepStatus.SKIPPED}
)

S = TypeVar("S", BuildStatus, JobStatus, StepStatus)

_TABLES: dict[type[Enum], frozenset[tuple[Enum, Enum]]] = {
    BuildStatus: BUILD_TRANSITIONS,
    JobStatus: JOB_TRANSITIONS,
    StepStatus: STEP_TRANSITIONS,
}


class IllegalTransition(Exception):
    """A move that is not in the entity's table. Never silently ignored."""

    def __init__(self, entity: str, current: Enum, target: Enum) -> None:
        super().__init__(f"{entity}: {current.value} -> {target.value} is not allowed")
        self.entity = entity
        self.current = current
        self.target = target


def is_allowed(current: S, target: S) -> bool:
    return (current, target) in _TABLES[type(current)]


def transition(entity: str, current: S, target: S) -> S:
    """Return `target` if the move is in the table, else raise IllegalTransition."""
    if type(current) is not type(target) or not is_allowed(current, target):
        raise IllegalTransition(entity, current, target)
    return target
