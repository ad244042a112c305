"""What every build actor shares, and the small pieces the actors and the control
both use."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.config import Settings
from buildcontrol_server.domain.errors import DomainError, Unavailable
from buildcontrol_server.domain.events import (
    AssignCommand,
    AssignedStep,
    CancelFinishedEvent,
    JobResult,
)
from buildcontrol_server.domain.model import Build, CancelInfo, Job
from buildcontrol_server.effects.base import NoSideEffects, SideEffects
from buildcontrol_server.store.base import BuildStore

if TYPE_CHECKING:
    from buildcontrol_server.actors.build_actor import BuildActor

log = logging.getLogger(__name__)


# Raises PermissionDenied for a build the caller may not cancel (security/caller.py);
# None: no check (authentication off).
MayCancel = Callable[[Build], None] | None


class JobQueue(Protocol):
    def enqueue(self, jobs: list[Job]) -> None: ...
    def drop_build(self, build_id: str) -> None: ...


@dataclass
class ActorContext:
    """What every actor shares."""

    store: BuildStore
    hub: AgentHub
    scheduler: JobQueue
    settings: Settings
    on_retire: Callable[[BuildActor], None]
    effects: SideEffects = field(default_factory=NoSideEffects)
    # Wall clock (epoch seconds): only for times that are stored and shown.
    clock: Callable[[], float] = time.time
    # Every duration and deadline inside the process: never steps with the wall clock.
    # Must tick with the event loop's clock (asyncio timers run on it).
    monotonic: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class ActorFacts:
    """What the invariant auditor checks of one actor, taken inside its turn."""

    build: Build
    stop_armed: frozenset[str]  # jobs with a stop deadline armed
    stop_sent: dict[str, str]  # job_id → session id its latest StopJob was handed to


def assignment_of(job: Job) -> AssignCommand:
    return AssignCommand(
        build_id=job.build_id,
        job_id=job.job_id,
        name=job.name,
        steps=tuple(AssignedStep(s.index, s.name, s.command, s.run_on_cancel) for s in job.steps),
        env=dict(job.env),
        secret_env_names=job.secret_env_names,
    )


def write_failure(error: Exception, what: str) -> DomainError:
    """What a caller gets when a store write failed: a domain error the store raised
    as such (a compare-and-set conflict, a closed store) passes as it is; anything
    else (SQLite refusing, a full disk, I/O errors) is UNAVAILABLE, so every method
    answers a failed write the same retryable way. The cause goes to the log."""
    if isinstance(error, DomainError):
        return error
    log.error("%s: the store write failed", what, exc_info=error)
    return Unavailable("the store could not save the change; try again")


class ActorRetired(Exception):
    """The build became terminal and its actor is gone: read it from the store."""


def job_result(job: Job) -> JobResult:
    return JobResult(job.build_id, job.job_id, job.status, job.outcome)


def finished_event(build: Build) -> CancelFinishedEvent:
    return CancelFinishedEvent(
        build.build_id, build.status, build.cancel, tuple(job_result(j) for j in build.jobs())
    )


def server_cancel(
    reason: str, settings: Settings, now: float, requested_by: str = "server"
) -> CancelInfo:
    """A cancel the server makes itself (timeouts), or on behalf of a submitter
    (superseded builds: `requested_by` is the newer build's submitter)."""
    return CancelInfo(reason, requested_by, False, settings.default_grace_period, now)
