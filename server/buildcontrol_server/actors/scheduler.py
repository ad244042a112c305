"""Hands ready jobs to connected agents: by labels and free slots, oldest job first.

Stages are ordered by the actors (they enqueue a stage's jobs only when the stage
before it succeeded); the scheduler only matches jobs to agents. It holds a slot on
the agent before asking the build's actor, so two rounds never give one slot twice;
the actor releases the slot if the job is no longer ready.

With replicas, what a round leaves unplaced is offered to the agents of the other
replicas (`elsewhere`, replicas/offers.py); a replica that claims one hands it back
through `take`. One server has no `elsewhere`: its rounds are unchanged."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.agents.events import AgentEvent, SlotFree
from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.domain.model import Job

log = logging.getLogger(__name__)


class Actor(Protocol):
    @property
    def closed(self) -> bool: ...
    def tell(self, command: cmd.Command) -> None: ...


@dataclass(frozen=True)
class ReadyJob:
    build_id: str
    job_id: str
    labels: dict[str, str]
    actor: Actor  # the build's actor, which enqueued the job


class Elsewhere(Protocol):
    """Where ready jobs without a fitting agent here are offered (other replicas)."""

    def offer(self, jobs: list[ReadyJob]) -> None:
        """These wait for an agent; those not offered yet are offered now."""
        ...

    def withdraw(self, job_ids: list[str]) -> None:
        """These no longer wait here (assigned here, or their build ended)."""
        ...


class Scheduler:
    def __init__(self, hub: AgentHub) -> None:
        self._hub = hub
        # Set by a replica (replicas/replica.py) before the scheduler starts.
        self.elsewhere: Elsewhere | None = None
        self._queue: dict[str, ReadyJob] = {}  # insertion order is the queue's order
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # gather() re-raises only if *this* task is cancelled, not for the child.
            await asyncio.gather(self._task, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    def agent_event(self, event: AgentEvent) -> None:
        """A slot may be free (SlotFree): look for work in the next round."""
        if isinstance(event, SlotFree):
            self._wake.set()

    def enqueue(self, jobs: list[Job], actor: Actor) -> None:
        """`actor` (the build's) has these jobs ready to run."""
        for job in jobs:
            ready = ReadyJob(job.build_id, job.job_id, job.labels, actor)
            self._queue.setdefault(job.job_id, ready)
        self._wake.set()

    def drop_build(self, build_id: str) -> None:
        dropped = [j for j, ready in self._queue.items() if ready.build_id == build_id]
        for job_id in dropped:
            del self._queue[job_id]
        if dropped and self.elsewhere is not None:
            self.elsewhere.withdraw(dropped)

    def take(self, job_id: str) -> ReadyJob | None:
        """Take `job_id` out of the queue for an agent found elsewhere (another
        replica's); None if it no longer waits here."""
        return self._queue.pop(job_id, None)

    def waiting(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._assign_round()

    def _assign_round(self) -> None:
        assigned: list[str] = []
        for job_id, ready in list(self._queue.items()):
            if not self._hub.any_free_slot():
                break
            session = self._hub.pick(ready.labels)
            if session is None:
                continue
            actor = ready.actor
            del self._queue[job_id]
            assigned.append(job_id)
            if actor.closed:
                continue  # the build ended meanwhile
            self._hub.hold(session.agent_id, job_id, ready.build_id)
            actor.tell(cmd.Assign(job_id=job_id, agent_id=session.agent_id))
        if self.elsewhere is not None:
            if assigned:
                self.elsewhere.withdraw(assigned)
            if self._queue:
                self.elsewhere.offer(list(self._queue.values()))
