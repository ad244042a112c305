"""What every build actor shares: the store, the link to the agents, the scheduler,
the settings, the side effects and the clocks (docs/architecture.md: the ports)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from buildcontrol_server.actors.agent_link import AgentLink
from buildcontrol_server.actors.scheduler import Actor
from buildcontrol_server.config import Settings
from buildcontrol_server.domain.model import Job
from buildcontrol_server.effects.base import NoSideEffects, SideEffects
from buildcontrol_server.store.base import BuildStore


class JobQueue(Protocol):
    """The scheduler, as the actors see it."""

    def enqueue(self, jobs: list[Job], actor: Actor) -> None:
        """`actor` has these jobs ready to run: it is told Assign when a slot is found."""
        ...

    def drop_build(self, build_id: str) -> None: ...


@dataclass
class ActorContext:
    """What every actor shares."""

    store: BuildStore
    # How the actors' AssignJobs and StopJobs reach the agents (agent_link.py).
    link: AgentLink
    scheduler: JobQueue
    settings: Settings
    effects: SideEffects = field(default_factory=NoSideEffects)
    # Wall clock (epoch seconds): only for times that are stored and shown.
    clock: Callable[[], float] = time.time
    # Every duration and deadline inside the process: never steps with the wall clock.
    # Must tick with the event loop's clock (asyncio timers run on it).
    monotonic: Callable[[], float] = time.monotonic
