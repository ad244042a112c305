"""Fakes for driving one BuildActor alone: a store that keeps what was committed (and
can be told to fail), an AgentLink that records what it was handed, a job queue and a
router that record what the actor told them. Only the actor is real here; the rpc and
e2e tests run it with the real store, hub and streams."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import cast

from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.scheduler import Actor
from buildcontrol_server.domain.agent_commands import AssignCommand, StopCommand
from buildcontrol_server.domain.model import Build, ChangeSet, Job
from buildcontrol_server.store.base import BuildStore


class StoreDown(Exception):
    """What the fake store raises while it is told to fail."""


class FakeStore:
    """Commits are snapshots of the live build (the store is the source of truth the
    actor reloads from after a failed commit)."""

    def __init__(self, build: Build) -> None:
        self._live = build
        self._stored = copy.deepcopy(build)
        self.commits: list[ChangeSet] = []
        self.failing = False
        # The commit lands, its caller sees it fail (PostgreSQL: the reply to COMMIT
        # lost with the connection).
        self.reply_lost = False
        self.reads_failing = 0  # how many of the next reads fail

    async def commit(self, changes: ChangeSet) -> None:
        await asyncio.sleep(0)  # a commit is a hop to the writer
        if self.failing:
            raise StoreDown("disk full")
        self.commits.append(changes)
        self._stored = copy.deepcopy(self._live)
        if self.reply_lost:
            raise StoreDown("connection lost after COMMIT")

    async def commit_all(self, change_sets: list[ChangeSet]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for changes in change_sets:
            try:
                await self.commit(changes)
            except StoreDown as error:
                results.append(error)
            else:
                results.append(None)
        return results

    async def get_build(self, build_id: str) -> Build | None:
        assert build_id == self._stored.build_id
        if self.reads_failing:
            self.reads_failing -= 1
            raise StoreDown("connection refused")
        # The actor takes the copy read as its build: later commits snapshot it.
        self._live = copy.deepcopy(self._stored)
        return self._live

    def stored(self) -> Build:
        return copy.deepcopy(self._stored)

    def as_store(self) -> BuildStore:
        # The actor uses commit, commit_all and get_build of the store's interface.
        return cast(BuildStore, self)


@dataclass
class FakeLink:
    """An AgentLink whose agents are connected unless listed in `away` (no stream:
    pending) or `elsewhere` (another replica holds the stream: forwarded)."""

    away: set[str] = field(default_factory=set)
    elsewhere: set[str] = field(default_factory=set)
    forwarded: list[StopCommand | AssignCommand] = field(default_factory=list)
    assigned: list[tuple[str, AssignCommand]] = field(default_factory=list)
    stops: list[StopCommand] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # a stop was handed
    pending: list[StopCommand | AssignCommand] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # job_id → agent_id
    suspects: set[str] = field(default_factory=set)
    unconfirmed: set[str] = field(default_factory=set)

    def connected(self, agent_id: str) -> bool:
        return agent_id not in self.away | self.elsewhere

    def is_latest(self, agent_id: str, session_id: str) -> bool:
        # One stream per agent here: a Hello always comes from it (or names none).
        return session_id in ("", f"session-of-{agent_id}")

    def assign(self, agent_id: str, command: AssignCommand) -> str | None:
        if agent_id in self.elsewhere:
            self.forwarded.append(command)
            return None
        if agent_id in self.away:
            self.pending.append(command)
            return None
        self.assigned.append((agent_id, command))
        return f"session-of-{agent_id}"

    def stop(self, stop: StopCommand) -> str | None:
        if stop.agent_id in self.elsewhere:
            self.forwarded.append(stop)
            return None
        if stop.agent_id in self.away:
            self.pending.append(stop)
            return None
        self.stops.append(stop)
        self.stopped.set()
        return f"session-of-{stop.agent_id}"

    def hold(self, agent_id: str, job_id: str, build_id: str) -> None:
        self.held[job_id] = agent_id

    def release(self, agent_id: str, job_id: str) -> None:
        self.held.pop(job_id, None)

    def keep_unconfirmed(self, agent_id: str, job_id: str) -> None:
        self.unconfirmed.add(job_id)

    def mark_suspect(self, agent_id: str) -> None:
        self.suspects.add(agent_id)

    def recovered(self) -> None:
        pass


@dataclass
class FakeQueue:
    ready: list[str] = field(default_factory=list)  # job ids, in the order enqueued
    dropped: list[str] = field(default_factory=list)

    def enqueue(self, jobs: list[Job], actor: Actor) -> None:
        self.ready += [job.job_id for job in jobs]

    def drop_build(self, build_id: str) -> None:
        self.dropped.append(build_id)


class FakeRouter:
    """Where the actor reports that it retired."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    def retired(self, actor: BuildActor) -> None:
        self.gone.set()
