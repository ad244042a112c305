"""Defects the fault-injection walks (tests/faults) found, each pinned by an example."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2, build_pb2
from buildcontrol_server.agents.hub import AgentSession
from buildcontrol_server.domain.model import ChangeSet

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import cancel, get, listed, rest_of, submit, wait_status
from tests.support.build_watch import jobs_running
from tests.support.pipelines import pipeline
from tests.support.servers import Running, running_server
from tests.support.store_faults import StoreFaults

WAIT = 10.0


def two_stages() -> build_control_pb2.SubmitBuildRequest:
    """Stage one runs on pool a; stage two needs pool b, which no agent offers."""
    return build_control_pb2.SubmitBuildRequest(
        pipeline="two-stages",
        stages=[
            build_control_pb2.StageSpec(
                name=f"stage{n}",
                jobs=[
                    build_control_pb2.JobSpec(
                        name=f"job{n}",
                        labels={"pool": pool},
                        steps=[build_control_pb2.StepSpec(command="true")],
                    )
                ],
            )
            for n, pool in enumerate(("a", "b"))
        ],
    )


async def stage_one_done(server: Running, build_id: str) -> None:
    """Follow WatchBuild until the first job SUCCEEDED."""
    async for event in server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id), timeout=WAIT
    ):
        kind = event.WhichOneof("event")
        if kind == "snapshot":
            statuses = [j.status for s in event.snapshot.stages for j in s.jobs]
        elif kind == "job_changed":
            statuses = [event.job_changed.status]
        else:
            continue
        if build_pb2.JOB_STATUS_SUCCEEDED in statuses:
            return


async def test_cancel_of_running_build_with_nothing_on_an_agent_ends_canceled(
    server: Running,
) -> None:
    """A RUNNING build whose next stage waits for an agent has nothing to stop: the
    cancel used to compute RUNNING -> CANCELED, a move the state table forbids, and
    was refused FAILED_PRECONDITION, so the build could never be cancelled."""
    agent = AgentPeer(server.target, "a1", {"pool": "a"})
    await agent.connect()
    build = (await server.stub.SubmitBuild(two_stages())).build
    assign = await agent.take_job()
    agent.finished(assign.build_id, assign.job_id)
    await stage_one_done(server, build.build_id)

    request = build_control_pb2.CancelRequest(build_id=build.build_id, reason="not needed")
    events = [m async for m in server.stub.Cancel(request, timeout=WAIT)]

    assert events[0].WhichOneof("event") == "accepted"
    assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    stored = (
        await server.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build.build_id))
    ).build
    assert stored.status == build_pb2.BUILD_STATUS_CANCELED
    assert [j.status for s in stored.stages for j in s.jobs] == [
        build_pb2.JOB_STATUS_SUCCEEDED,
        build_pb2.JOB_STATUS_CANCELED,
    ]
    assert stored.stages[1].jobs[0].outcome == build_pb2.JOB_OUTCOME_NEVER_STARTED
    await agent.leave()


class HeldBuildWrites:
    """The commits of chosen builds' changes wait until their build is released (a
    slow disk for those builds alone): every build but `passing` is held."""

    def __init__(self, server: Running, passing: set[str]) -> None:
        store = server.app.store
        self._commit = store.commit
        store.commit = self._commit_unless_held  # type: ignore[method-assign]
        self._passing = set(passing)
        self._held: dict[str, asyncio.Event] = {}
        self._released: dict[str, asyncio.Event] = {}

    def hold(self, build_id: str) -> None:
        self._passing.discard(build_id)

    def release(self, build_id: str) -> None:
        self._passing.add(build_id)
        self._released.setdefault(build_id, asyncio.Event()).set()

    async def holding(self, build_id: str) -> None:
        """Return once a commit of `build_id` waits at the hold."""
        await asyncio.wait_for(self._held.setdefault(build_id, asyncio.Event()).wait(), WAIT)

    async def _commit_unless_held(self, changes: ChangeSet) -> None:
        touched = {job.build_id for job, _ in changes.jobs.values()} | set(changes.builds)
        for build_id in touched - self._passing:
            self._held.setdefault(build_id, asyncio.Event()).set()
            await self._released.setdefault(build_id, asyncio.Event()).wait()
        await self._commit(changes)


async def test_a_job_whose_assignment_goes_out_after_a_hello_is_not_forced_by_that_hello(
    tmp_path: Path,
) -> None:
    """Seed 3016 of the scripted walks. A job is given to an agent whose stream is
    about to be replaced; its AssignJob goes out (after the commit) on the new stream,
    whose Hello, written before, cannot list it. While that Hello's re-sent result
    commits, a cancel makes the job STOPPING; the Hello's reconciliation then took
    the job's absence for a loss and ended it FORCED, overriding the GRACEFUL stop
    the agent reported (and was told was settled)."""
    async with running_server(tmp_path, stop_ack_timeout=30.0, reconnect_window=30.0) as server:
        agent = AgentPeer(server.target, "a1", capacity=2)
        await agent.connect()
        first = await submit(server, jobs=1)
        done = await agent.take_job()
        await wait_status(server, first.build_id, build_pb2.BUILD_STATUS_RUNNING)

        held = HeldBuildWrites(server, passing={first.build_id})
        second = await submit(server, jobs=1)
        await held.holding(second.build_id)  # its job is given to a1's first stream
        held.hold(first.build_id)
        again = AgentPeer(server.target, "a1", capacity=2)
        hello = again.hello()  # the first job finished while the agent was away
        hello.finished_jobs.append(
            agent_pb2.JobFinished(
                build_id=done.build_id, job_id=done.job_id, succeeded=True, report_id="a1/1"
            )
        )
        await again.connect(hello=hello)
        await held.holding(first.build_id)  # the re-sent result commits
        held.release(second.build_id)
        given = await again.take_job()  # on the new stream, after its Hello
        assert given.build_id == second.build_id
        stream = cancel(server, second.build_id)
        assert (await stream.read()).WhichOneof("event") == "accepted"
        await again.next("stop_job")
        held.release(first.build_id)  # the Hello's reconciliation runs now

        again.stopped(given.build_id, given.job_id)
        finished = (await rest_of(stream))[-1].finished
        assert finished.status == build_pb2.BUILD_STATUS_CANCELED
        assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_GRACEFUL]
        assert (await get(server, first.build_id)).status == build_pb2.BUILD_STATUS_SUCCEEDED
        await again.leave()


def reports_heard(server: Running) -> asyncio.Queue[str]:
    """The job id of each report as the server takes it in (before its actor has it)."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    hub = server.app.hub
    original = hub.answered

    def answered(agent_id: str, job_id: str, gone: bool) -> None:
        original(agent_id, job_id, gone)
        heard.put_nowait(job_id)

    hub.answered = answered  # type: ignore[method-assign]
    return heard


def connects_heard(server: Running) -> asyncio.Queue[str]:
    """The agent id of each stream the server takes as its agent's session."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    hub = server.app.hub
    original = hub.connect

    def connect(session: AgentSession) -> AgentSession | None:
        previous = original(session)
        heard.put_nowait(session.agent_id)
        return previous

    hub.connect = connect  # type: ignore[method-assign]
    return heard


async def forced_write_held(server: Running, agent: AgentPeer) -> tuple[StoreFaults, str, str, Any]:
    """A job `agent` runs, cancelled with grace 0 and its stop ignored, until the
    FORCED write of its deadline waits at the held store. Returns (faults, build id,
    job id, the Cancel stream)."""
    faults = StoreFaults(server.app.store)
    build = await submit(server)
    job = await agent.take_job()
    await jobs_running(server.stub, build.build_id, 1)
    stream = cancel(server, build.build_id, grace_period={"seconds": 0})
    assert (await stream.read()).WhichOneof("event") == "accepted"
    await agent.next("stop_job")  # and ignores it
    faults.hold_writes()
    await asyncio.wait_for(faults.holding.wait(), WAIT)  # the deadline's FORCED write
    return faults, build.build_id, job.job_id, stream


async def test_a_stop_reported_while_its_forced_write_commits_frees_the_slot(
    server: Running,
) -> None:
    """Seeds 1004, 1009, 1021 of the scripted walks: the agent's JobStopped reached
    the server while the FORCED write of the job's deadline was committing. The
    report freed nothing (the job was not FORCED yet), then the FORCED write kept the
    slot for an agent that had already said the job is gone: held for good, and the
    agent suspect although it had answered."""
    agent = AgentPeer(server.target, "a1", capacity=1)
    await agent.connect()
    heard = reports_heard(server)
    faults, build_id, job_id, stream = await forced_write_held(server, agent)
    stopped = agent_pb2.JobStopped(
        build_id=build_id, job_id=job_id, outcome=build_pb2.JOB_OUTCOME_GRACEFUL, report_id="r1"
    )
    agent.send(job_stopped=stopped)
    assert await asyncio.wait_for(heard.get(), WAIT) == job_id  # taken in, not yet applied
    faults.release()

    finished = (await rest_of(stream))[-1].finished
    assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_FORCED]
    acknowledged = (await agent.next("reports_committed")).reports_committed
    assert list(acknowledged.report_ids) == ["r1"]
    assert await listed(server) == {"a1": (False, [])}, "the slot is free, a1 answered"
    queued = await submit(server)
    assert (await agent.next("assign_job")).assign_job.build_id == queued.build_id
    await agent.leave()


async def test_a_reconnect_without_a_job_whose_forced_write_commits_frees_the_slot(
    server: Running,
) -> None:
    """Seeds 1022 and 1028 of the scripted walks: the agent came back without the job
    while the FORCED write of its deadline was committing. The reconnect freed
    nothing (the job was not FORCED yet), then the FORCED write kept the slot for an
    agent that had already said it no longer runs the job."""
    agent = AgentPeer(server.target, "a1", capacity=1)
    await agent.connect()
    connected = connects_heard(server)
    faults, _, _, stream = await forced_write_held(server, agent)
    again = AgentPeer(server.target, "a1", capacity=1)
    await again.connect()  # its Hello runs nothing
    assert await asyncio.wait_for(connected.get(), WAIT) == "a1"
    faults.release()

    finished = (await rest_of(stream))[-1].finished
    assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_FORCED]
    queued = await submit(server)
    assign = (await again.next("assign_job")).assign_job  # capacity 1: the slot was freed
    assert assign.build_id == queued.build_id
    assert await listed(server) == {"a1": (False, [assign.job_id])}
    await again.leave()


def commands_told(server: Running, build_id: str) -> asyncio.Queue[str]:
    """The name of each command the build's actor is told, as it is queued."""
    told: asyncio.Queue[str] = asyncio.Queue()
    actor = server.app.registry.get(build_id)
    assert actor is not None
    original = actor.tell

    def tell(command: Any) -> None:
        original(command)
        told.put_nowait(type(command).__name__)

    actor.tell = tell  # type: ignore[method-assign]
    return told


async def told_until(told: asyncio.Queue[str], name: str) -> None:
    async with asyncio.timeout(WAIT):
        while await told.get() != name:
            pass


async def test_a_hello_overtaken_by_a_newer_stream_does_not_force_a_job_given_on_that_stream(
    tmp_path: Path,
) -> None:
    """Seed 200061 of the scripted walks: an agent reconnects three times while its
    build's actor is busy. A job's AssignJob goes out on the newest stream; then a
    cancel, queued before the second stream's Hello, makes it STOPPING; that Hello,
    written before the newest stream existed, cannot list the job, and its
    reconciliation took the job for lost (FORCED) although the agent ran it."""
    async with running_server(tmp_path, stop_ack_timeout=30.0, reconnect_window=30.0) as server:
        first = AgentPeer(server.target, "a1", capacity=1)
        await first.connect()
        build = await submit(server, jobs=2)
        await first.next("assign_job")  # one job on the first stream, never taken
        told = commands_told(server, build.build_id)
        held = HeldBuildWrites(server, passing=set())

        second = AgentPeer(server.target, "a1", capacity=2)
        await second.connect()  # a free slot: the other job is given, its commit waits
        await told_until(told, "Assign")
        await held.holding(build.build_id)
        stream = cancel(server, build.build_id)
        await told_until(told, "Cancel")
        third = AgentPeer(server.target, "a1", capacity=2)
        await third.connect()
        await told_until(told, "AgentReconnected")
        newest = AgentPeer(server.target, "a1", capacity=2)
        await newest.connect()
        await told_until(told, "AgentReconnected")
        held.release(build.build_id)

        given = (await newest.next("assign_job")).assign_job  # on the newest stream
        while (await newest.next("stop_job")).stop_job.job_id != given.job_id:
            pass
        newest.stopped(given.build_id, given.job_id)
        finished = (await rest_of(stream))[-1].finished
        assert finished.status == build_pb2.BUILD_STATUS_CANCELED
        outcomes = {j.job_id: j.outcome for j in finished.jobs}
        assert outcomes[given.job_id] == build_pb2.JOB_OUTCOME_GRACEFUL
        await newest.leave()


async def test_a_reconnect_still_running_a_job_whose_forced_write_commits_stops_it(
    server: Running,
) -> None:
    """Seeds 300134 and 306766 of the scripted walks: the agent came back still
    running the job while the FORCED write of its deadline was committing. The Hello's
    claims were read before the job was FORCED, so it got no StopJob, and once FORCED
    nothing sends one: the job ran on and its slot stayed held for good."""
    agent = AgentPeer(server.target, "a1", capacity=1)
    await agent.connect()
    connected = connects_heard(server)
    faults, build_id, job_id, stream = await forced_write_held(server, agent)
    again = AgentPeer(server.target, "a1", capacity=1)
    await again.connect(running=[(build_id, job_id)])
    assert await asyncio.wait_for(connected.get(), WAIT) == "a1"
    faults.release()

    finished = (await rest_of(stream))[-1].finished
    assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_FORCED]
    stop = (await again.next("stop_job")).stop_job  # it must not run on
    assert stop.job_id == job_id
    assert await listed(server) == {"a1": (False, [job_id])}  # held until it is gone
    again.stopped(build_id, job_id)
    queued = await submit(server)
    assert (await again.next("assign_job")).assign_job.build_id == queued.build_id
    await again.leave()


async def test_a_submit_whose_caller_left_while_its_write_was_queued_still_gets_its_actor(
    server: Running,
) -> None:
    # Seed 300427: SubmitBuild passed its deadline while the build's write waited in the
    # group commit; the write committed anyway and the build sat QUEUED with no actor
    # (no Cancel could reach it, the auditor flagged it) until a restart.
    writer = server.app.store._writer  # type: ignore[attr-defined]
    write_batch = writer._write_batch
    reached, go_on = asyncio.Event(), asyncio.Event()

    async def held(batch: Any) -> None:
        reached.set()
        await go_on.wait()
        await write_batch(batch)

    writer._write_batch = held
    call = server.stub.SubmitBuild(pipeline(name="left-early"), timeout=1.0)
    await asyncio.wait_for(reached.wait(), WAIT)
    try:
        await call
        raise AssertionError("the submit should have passed its deadline")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    registry = server.app.registry
    spawn = registry.spawn
    spawned: asyncio.Queue[str] = asyncio.Queue()

    def spawn_seen(build: Any, reserved: bool = False) -> Any:
        spawned.put_nowait(build.build_id)
        return spawn(build, reserved)

    registry.spawn = spawn_seen  # type: ignore[method-assign]
    writer._write_batch = write_batch
    go_on.set()

    build_id = await asyncio.wait_for(spawned.get(), WAIT)
    listed_builds = await server.stub.ListBuilds(
        build_control_pb2.ListBuildsRequest(pipeline="left-early"), timeout=WAIT
    )
    assert [b.build_id for b in listed_builds.builds] == [build_id]
    answers = [m async for m in cancel(server, build_id)]
    assert answers[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
