"""CancelBuilds sends the StopJobs of each batch as soon as that batch's CANCELING
write commits: the first, small batch's builds are being stopped on their agents
while later batches are still being written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from buildcontrol_proto.v1 import build_control_pb2
from buildcontrol_server.actors import bulk_cancel
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.domain.agent_commands import StopCommand
from buildcontrol_server.domain.model import ChangeSet
from buildcontrol_server.domain.states import BuildStatus

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import rest_of, settled, submit
from tests.support.servers import Running

WAIT = 20.0


class LaterBatchesHeld:
    """The store's first commit_all goes through; later ones wait until `release`."""

    def __init__(self, server: Running) -> None:
        store = server.app.store
        self._commit_all = store.commit_all
        store.commit_all = self._held_after_first  # type: ignore[method-assign]
        self._calls = 0
        self.holding = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def _held_after_first(self, change_sets: list[ChangeSet]) -> list[Any]:
        self._calls += 1
        if self._calls > 1:
            self.holding.set()
            await self._released.wait()
        return await self._commit_all(change_sets)


async def _running_on_one_agent(server: Running, count: int) -> tuple[AgentPeer, list[Any]]:
    """`count` running one-job builds of pipeline "nightly", all on agent a1."""
    agent = AgentPeer(server.target, "a1", capacity=count)
    await agent.connect()
    builds = [await submit(server, name="nightly") for _ in range(count)]
    for _ in builds:
        await agent.take_job()
    await asyncio.gather(*(settled(server, b.build_id, 1) for b in builds))
    return agent, builds


def test_batches_start_small_and_grow_to_the_batch_size() -> None:
    first = bulk_cancel.FIRST_BATCH_SIZE
    sizes = bulk_cancel.batch_sizes(5000)
    assert sum(sizes) == 5000
    assert sizes[0] == first
    assert sizes[1] == first * bulk_cancel.BATCH_GROWTH
    assert max(sizes) == bulk_cancel.BATCH_SIZE
    assert bulk_cancel.batch_sizes(3) == [3]
    assert bulk_cancel.batch_sizes(0) == []
    # A rest smaller than the next batch would be joins the batch before it (not the
    # first: its stops leave after a few builds' work, whatever follows).
    assert bulk_cancel.batch_sizes(first + 1) == [first, 1]
    assert bulk_cancel.batch_sizes(50) == [first, 50 - first]
    assert bulk_cancel.batch_sizes(1000)[-2:] == [bulk_cancel.BATCH_SIZE, 332]


async def test_first_batch_stops_leave_while_later_batches_are_still_written(
    server: Running,
) -> None:
    first = bulk_cancel.FIRST_BATCH_SIZE
    count = first + 3
    agent, builds = await _running_on_one_agent(server, count)
    held = LaterBatchesHeld(server)
    stream = server.stub.CancelBuilds(
        build_control_pb2.CancelBuildsRequest(pipeline="nightly", reason="bad tag"), timeout=WAIT
    )
    read_first = asyncio.ensure_future(stream.read())
    stops = [(await agent.next("stop_job")).stop_job for _ in range(first)]
    await asyncio.wait_for(held.holding.wait(), WAIT)
    # The first batch is committed and its stops are at the agent; the rest of the
    # builds are not even CANCELING yet, and the call has not said "accepted".
    stopped = {stop.build_id for stop in stops}
    assert len(stopped) == first
    for build in builds:
        stored = await server.app.store.get_build(build.build_id)
        assert stored is not None
        expected = BuildStatus.CANCELING if build.build_id in stopped else BuildStatus.RUNNING
        assert stored.status is expected, build.build_id
    assert not read_first.done()
    held.release()
    stops += [(await agent.next("stop_job")).stop_job for _ in range(count - first)]
    assert {stop.build_id for stop in stops} == {b.build_id for b in builds}
    accepted = (await asyncio.wait_for(read_first, WAIT)).accepted
    assert (accepted.matched, accepted.committed) == (count, count)
    for stop in stops:
        agent.stopped(stop.build_id, stop.job_id)
    rest = await rest_of(stream)
    assert (rest[-1].summary.matched, rest[-1].summary.canceled) == (count, count)
    await agent.leave()


async def test_the_next_batch_is_told_only_once_the_first_batchs_stops_are_handed_out(
    server: Running,
) -> None:
    first = bulk_cancel.FIRST_BATCH_SIZE
    count = first + 3
    agent, builds = await _running_on_one_agent(server, count)
    # One timeline of what the server does: a cancel told to an actor, a StopJob
    # handed to the agent's stream.
    timeline: list[tuple[str, str]] = []
    session = server.app.hub.session("a1")
    assert session is not None
    send = session.send

    def send_and_note(command: Any) -> None:
        if isinstance(command, StopCommand):
            timeline.append(("stop", command.build_id))
        send(command)

    session.send = send_and_note  # type: ignore[method-assign]
    for build in builds:
        actor = server.app.registry.get(build.build_id)
        assert actor is not None
        actor.tell = _noting_cancels(actor.tell, build.build_id, timeline)  # type: ignore[method-assign]
    stream = server.stub.CancelBuilds(
        build_control_pb2.CancelBuildsRequest(pipeline="nightly", reason="bad tag"), timeout=WAIT
    )
    stops = [(await agent.next("stop_job")).stop_job for _ in range(count)]
    told = [build_id for what, build_id in timeline if what == "told"]
    first_batch, later = set(told[:first]), told[first:]
    assert len(later) == count - first
    # Every StopJob of the first batch went out before any later build was told.
    before_later = timeline[: timeline.index(("told", later[0]))]
    assert {b for what, b in before_later if what == "stop"} == first_batch
    for stop in stops:
        agent.stopped(stop.build_id, stop.job_id)
    rest = await rest_of(stream)
    assert (rest[-1].summary.matched, rest[-1].summary.canceled) == (count, count)
    await agent.leave()


def _noting_cancels(
    tell: Callable[[cmd.Command], None], build_id: str, timeline: list[tuple[str, str]]
) -> Callable[[cmd.Command], None]:
    def noting(command: cmd.Command) -> None:
        if isinstance(command, cmd.CancelInBatch):
            timeline.append(("told", build_id))
        tell(command)

    return noting
