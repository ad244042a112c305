"""What every build actor shares, and the small pieces the actors and the control
both use."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.config import Settings
from buildcontrol_server.domain.events import CancelFinishedEvent, JobResult
from buildcontrol_server.domain.model import Build, CancelInfo, Job
from buildcontrol_server.effects.base import NoSideEffects, SideEffects
from buildcontrol_server.store.base import BuildStore

if TYPE_CHECKING:
    from buildcontrol_server.actors.build_actor import BuildActor


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
    clock: Callable[[], float] = time.time


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
