"""What callers ask of a build's actor. Each command carries the future its answer
goes to; the actor handles commands one at a time, in arrival order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from buildcontrol_server.actors.batch import CancelBatch
from buildcontrol_server.domain.events import AgentReport, CancelEvent, WatchChange
from buildcontrol_server.domain.model import Build, CancelInfo, ChangeSet


def _future() -> asyncio.Future[Any]:
    future = asyncio.get_running_loop().create_future()
    # Commands that are told, not asked, have nobody awaiting their reply; the actor
    # logs what went wrong, so an unread error here is not worth asyncio's warning.
    future.add_done_callback(_mark_read)
    return future


def _mark_read(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass
class Command:
    reply: asyncio.Future[Any] = field(default_factory=_future, init=False, repr=False)

    # The only ways the actors answer: a reply may already be done when they get to
    # it (the caller that awaited it was cancelled, which cancels the future), and
    # resolving a done future raises InvalidStateError inside the actor's loop.
    def answer(self, result: Any) -> None:
        """Resolve the reply with `result`, unless it is already done."""
        if not self.reply.done():
            self.reply.set_result(result)

    def fail(self, error: BaseException) -> None:
        """Resolve the reply with `error`, unless it is already done."""
        if not self.reply.done():
            self.reply.set_exception(error)


@dataclass
class Assign(Command):
    """The scheduler holds a slot of `agent_id` for `job_id`."""

    job_id: str
    agent_id: str


@dataclass
class Report(Command):
    agent_id: str
    report: AgentReport


@dataclass
class Cancel(Command):
    info: CancelInfo
    # Receives the rest of the cancel's events after the reply (None ends them).
    listener: asyncio.Queue[CancelEvent | None]
    received_at: float  # perf_counter() when the request arrived


@dataclass
class Render(Command):
    """Answer `render(build)`, computed inside the actor's turn (a consistent read)."""

    render: Callable[[Build], Any]


@dataclass
class Watch(Command):
    """Answer `render(build)` and subscribe `listener` to every change after it."""

    render: Callable[[Build], Any]
    listener: asyncio.Queue[WatchChange | None]


@dataclass
class Unsubscribe(Command):
    listener: asyncio.Queue[Any]


@dataclass
class StopDeadlinePassed(Command):
    pass


@dataclass
class Inspect(Command):
    """Answer `check(facts)` for the actor's ActorFacts (what the invariant auditor
    checks), run inside its turn: the build cannot change while it is checked."""

    check: Callable[[Any], Any]


@dataclass
class AgentReconnected(Command):
    """`agent_id` connected again, running `running` (job ids) of this build, as
    the Hello of session `session_id` says."""

    agent_id: str
    running: frozenset[str]
    session_id: str = ""


@dataclass
class AgentLost(Command):
    """`agent_id` did not come back within its reconnect window."""

    agent_id: str


@dataclass
class Shutdown(Command):
    """Finish the commands before this one, then stop (the build stays live on disk)."""


class BatchSeat:
    """One command's place in a CancelBatch. The batch commits when every command has
    arrived (contributed or abstained) exactly once; a seat makes a second arrival a
    no-op, so an actor whose turn failed halfway can always give its seat up."""

    def __init__(self, batch: CancelBatch) -> None:
        self._batch = batch
        self.arrived = False

    async def contribute(self, changes: ChangeSet) -> None:
        if self.arrived:
            raise RuntimeError("this command already arrived at its batch")
        self.arrived = True
        await self._batch.contribute(changes)

    def abstain(self) -> None:
        if not self.arrived:
            self.arrived = True
            self._batch.abstain()


@dataclass
class CancelInBatch(Command):
    """A cancel whose CANCELING write shares one transaction with other builds'
    (CancelBuilds): the actor applies it, hands its change set to `batch`, and waits
    for the batch's commit before acting on it."""

    info: CancelInfo
    listener: asyncio.Queue[CancelEvent | None]
    batch: CancelBatch
    received_at: float
    # How the actor takes part in the batch (arrives once, see BatchSeat).
    seat: BatchSeat = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.seat = BatchSeat(self.batch)

    # The one place a member settles its seat: whoever answers the command (the actor
    # after its turn, a retired actor, a failed loop) also gives up a seat it did not
    # take, so the batch never waits for a build that will not write.
    def answer(self, result: Any) -> None:
        self.seat.abstain()
        super().answer(result)

    def fail(self, error: BaseException) -> None:
        self.seat.abstain()
        super().fail(error)


@dataclass
class JobTimedOut(Command):
    """The job ran longer than its timeout."""

    job_id: str
    attempt: int = 0  # retries after its effect failed to commit


@dataclass
class CleanupTimedOut(Command):
    """A cleanup job ran longer than the cleanup timeout."""

    job_id: str
    attempt: int = 0  # retries after its effect failed to commit


@dataclass
class QueueTimedOut(Command):
    """The build waited for an agent longer than the queue timeout."""

    attempt: int = 0  # retries after its effect failed to commit


@dataclass
class Admit(Command):
    """The build's turn in its concurrency group: its jobs may be scheduled."""
