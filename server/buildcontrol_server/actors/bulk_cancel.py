"""CancelBuilds: many builds' cancels, their CANCELING writes batched, reported as
one stream (accepted once committed, each build as it ends, a summary); and the
bookkeeping of open cancel streams that a shutdown ends with UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.batch import BatchStore, CancelBatch
from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.errors import ActorRetired
from buildcontrol_server.actors.in_flight import InFlight
from buildcontrol_server.domain.errors import FailedPrecondition, Unavailable
from buildcontrol_server.domain.events import (
    CancelAcceptedEvent,
    CancelFinishedEvent,
    finished_event,
)
from buildcontrol_server.domain.model import Build, CancelInfo
from buildcontrol_server.domain.states import BuildStatus

# CANCELING writes of at most this many builds share one transaction in CancelBuilds.
# Larger batches finish a mass cancel no sooner (5,000 builds x 2 jobs, all
# CANCELED: 1.61-1.79 s in batches of 500, 1.58-1.66 s in batches of 2,000, bench/
# scenario 6, three interleaved runs each) but keep the event loop busier in one go:
# a Cancel of another build meanwhile waited up to 0.25-0.5 s for its StopJob in
# batches of 500, 0.9-1 s in batches of 2,000.
BATCH_SIZE = 500
# The first batch is this small and each next one BATCH_GROWTH times larger (up
# to BATCH_SIZE): the first StopJobs leave after a few builds' write, not after 500.
FIRST_BATCH_SIZE = 8
BATCH_GROWTH = 4
# How long the next batch waits for the previous one's actors to arrive at it (its
# commit then starts) before its own actors are told anyway: an actor busy with a
# long turn (a store retry) must not hold up every later batch.
NEXT_BATCH_WAIT_SECONDS = 0.05

# The CancelBuilds calls still telling their actors (a strong reference to each task).
_TELLING: set[asyncio.Future[list[Any]]] = set()

# Put into a cancel stream's listener when the server stops: the stream ends with
# UNAVAILABLE (retry against the restarted server), not with a silent cut.
_SHUTDOWN = object()
SHUTDOWN_MESSAGE = (
    "the server is shutting down; a committed cancel resumes after its restart, retry there"
)


@dataclass
class CancelBuildsSummary:
    matched: int = 0
    canceled: int = 0
    already_canceling: int = 0
    not_cancelable: int = 0
    not_found: int = 0


@dataclass(frozen=True)
class CancelBuildsAccepted:
    """The CANCELING writes of a CancelBuilds call are committed (its first event)."""

    matched: int
    # Builds this call committed CANCELING (or straight CANCELED).
    committed: int
    already_canceling: int
    not_cancelable: int
    not_found: int


# What a CancelBuilds stream says, in this order: accepted, builds, summary.
CancelBuildsEvent = CancelBuildsAccepted | CancelFinishedEvent | CancelBuildsSummary


class CancelStreams:
    """The cancel streams now open (Cancel and CancelBuilds), so a shutdown can end
    them with UNAVAILABLE, and the refusal of new cancels once it began."""

    def __init__(self, shutdown_message: str = SHUTDOWN_MESSAGE) -> None:
        # What a stream ended by the shutdown says (UNAVAILABLE).
        self._message = shutdown_message
        self._closing = False
        self._open: set[asyncio.Queue[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def open(self) -> int:
        return len(self._open)

    @property
    def accepting(self) -> bool:
        return not self._closing

    def refuse_if_closing(self) -> None:
        if self._closing:
            metrics.CANCELS.labels(result="refused").inc()
            raise Unavailable(self._message)

    def stop_accepting(self) -> None:
        """Shutdown begins: every new Cancel and CancelBuilds is refused UNAVAILABLE."""
        self._closing = True

    def end_all(self) -> None:
        """End the streams still open with UNAVAILABLE: their cancels are committed
        and resume after the restart, where the caller may follow them again."""
        self._closing = True
        for listener in list(self._open):
            listener.put_nowait(_SHUTDOWN)

    # The bound is the API (shutdown's grace); on expiry the streams are ended by
    # end_all(), which a caller's asyncio.timeout alone would not do.
    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait at most `timeout` seconds for every open stream to end; True if they did."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def opened(self, listener: asyncio.Queue[Any]) -> None:
        self._open.add(listener)
        self._idle.clear()

    def closed(self, listener: asyncio.Queue[Any]) -> None:
        self._open.discard(listener)
        if not self._open:
            self._idle.set()

    def check(self, item: object) -> None:
        if item is _SHUTDOWN:
            raise Unavailable(self._message)

    async def follow(self, listener: asyncio.Queue[Any]) -> AsyncIterator[Any]:
        """A listener's items until its None; UNAVAILABLE if the server stops first."""
        self.opened(listener)
        try:
            while (item := await listener.get()) is not None:
                self.check(item)
                yield item
        finally:
            self.closed(listener)


async def run_cancel_builds(
    store: BatchStore,
    streams: CancelStreams,
    in_flight: InFlight,
    actors: list[BuildActor],
    finished: list[Build],
    info: CancelInfo,
    summary: CancelBuildsSummary,
    received_at: float,
) -> AsyncIterator[CancelBuildsEvent]:
    ended: list[CancelFinishedEvent] = []  # already terminal: sent after `accepted`
    for build in finished:
        if build.status is BuildStatus.CANCELED:
            summary.canceled += 1
            summary.already_canceling += 1
            ended.append(finished_event(build))
        else:
            summary.not_cancelable += 1
    listener: asyncio.Queue[Any] = asyncio.Queue()
    streams.opened(listener)
    try:
        # A task of its own: a caller that goes away while the batches are being told
        # does not leave the later builds uncancelled (shielded, it runs to its end).
        telling = asyncio.ensure_future(
            _cancel_all(store, in_flight, actors, info, listener, received_at)
        )
        _TELLING.add(telling)
        telling.add_done_callback(_TELLING.discard)
        outcomes = await asyncio.shield(telling)
        open_streams, committed = _count_outcomes(outcomes, info, summary, ended)
        yield CancelBuildsAccepted(
            summary.matched,
            committed,
            summary.already_canceling,
            summary.not_cancelable,
            summary.not_found,
        )
        for event in ended:
            yield event
        while open_streams:
            item = await listener.get()
            streams.check(item)
            if item is None:
                open_streams -= 1
            elif isinstance(item, CancelFinishedEvent):
                if item.status is BuildStatus.CANCELED:
                    summary.canceled += 1
                else:
                    summary.not_cancelable += 1
                yield item
        yield summary
    finally:
        streams.closed(listener)


async def _cancel_all(
    store: BatchStore,
    in_flight: InFlight,
    actors: list[BuildActor],
    info: CancelInfo,
    listener: asyncio.Queue[Any],
    received_at: float,
) -> list[Any]:
    """Every actor's answer (or error) to the cancel."""
    # Counted as under way until every actor answered: a drain waits for these
    # CANCELING writes (and so their StopJobs) before it tells agents to leave.
    with in_flight.track():
        replies = await _tell_cancels(store, actors, info, listener, received_at)
        return await asyncio.gather(*replies, return_exceptions=True)


def batch_sizes(count: int) -> list[int]:
    """How `count` builds are split into batches: small first, growing to BATCH_SIZE.
    A later batch also takes a rest smaller than the batch after it would be (50: 8
    and 42, not 8, 32 and 10): a batch more is a commit and a turn of the stream more."""
    sizes: list[int] = []
    size = FIRST_BATCH_SIZE
    while count > 0:
        take = min(size, count, BATCH_SIZE)
        if sizes and count - take < size * BATCH_GROWTH:
            take = min(count, BATCH_SIZE)
        sizes.append(take)
        count -= take
        size *= BATCH_GROWTH
    return sizes


async def _tell_cancels(
    store: BatchStore,
    actors: list[BuildActor],
    info: CancelInfo,
    listener: asyncio.Queue[Any],
    received_at: float,
) -> list[asyncio.Future[Any]]:
    """Queue the cancel at every actor, batch by batch (batch_sizes). A batch's actors
    are told once the previous batch is committed and its actors acted on it
    (`_written`), so the first batch's StopJobs leave after 8 builds' work and one
    small commit, not behind the domain work of the batches after it."""
    replies: list[asyncio.Future[Any]] = []
    start = 0
    previous: CancelBatch | None = None
    for size in batch_sizes(len(actors)):
        if previous is not None:
            await _written(previous)
        chunk = actors[start : start + size]
        start += size
        batch = CancelBatch(store, expected=len(chunk))
        for actor in chunk:
            command = cmd.CancelInBatch(
                info=info, listener=listener, batch=batch, received_at=received_at
            )
            actor.tell(command)
            replies.append(command.reply)
        previous = batch
    return replies


async def _written(batch: CancelBatch) -> None:
    """Until `batch` is committed and its actors' turns went on (their StopJobs are on
    the agents' streams). Telling the next batch sooner queued its actors' turns (and,
    through the writer's gathering, their commit too) ahead of this batch's stops: the
    first StopJob of 5,000 builds left after ~300 ms. The wait for the actors to arrive
    is bounded: one busy with a long turn (a store retry) holds up no later batch."""
    try:
        await asyncio.wait_for(batch.arrived.wait(), NEXT_BATCH_WAIT_SECONDS)
    except TimeoutError:
        return
    await batch.committed.wait()


def _count_outcomes(
    outcomes: list[Any],
    info: CancelInfo,
    summary: CancelBuildsSummary,
    ended: list[CancelFinishedEvent],
) -> tuple[int, int]:
    """Count the actors' answers into `summary`; returns (streams that will end
    with a None, builds this call committed). Raises an unexpected error."""
    open_streams = committed = 0
    for outcome in outcomes:
        if isinstance(outcome, CancelAcceptedEvent):
            open_streams += 1  # its stream ends with a None after its terminal event
            if outcome.status is BuildStatus.CANCELING and outcome.cancel != info:
                summary.already_canceling += 1
            else:
                committed += 1
        elif isinstance(outcome, CancelFinishedEvent):
            summary.canceled += 1
            summary.already_canceling += 1
            ended.append(outcome)
        elif isinstance(outcome, (FailedPrecondition, ActorRetired)):
            summary.not_cancelable += 1
        elif isinstance(outcome, BaseException):
            raise outcome
    return open_streams, committed
