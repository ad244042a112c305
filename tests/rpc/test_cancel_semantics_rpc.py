"""Cancel semantics over a real server: idempotence, escalation, races, CancelBuilds,
concurrency groups, watchers, timeouts and cleanup, with a scripted agent peer."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.actors import bulk_cancel

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import cancel_request, get, rest_of, settled, submit, wait_status
from tests.support.pipelines import pipeline
from tests.support.servers import Running, running_server

WAIT = 20.0


async def test_100_concurrent_cancels_one_transition_one_stop_per_job_identical_ends(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "a1", capacity=3)
    await agent.connect()
    build = await submit(server, jobs=3)
    jobs = [await agent.take_job() for _ in range(3)]
    version_before = (await server.app.store.get_build(build.build_id)).version  # type: ignore[union-attr]
    streams = [
        server.stub.Cancel(cancel_request(build.build_id, reason=f"r{i}"), timeout=WAIT)
        for i in range(100)
    ]
    firsts = await asyncio.gather(*(s.read() for s in streams))
    assert {f.WhichOneof("event") for f in firsts} == {"accepted"}
    # One cancel won; the other 99 joined it and see the winner's reason.
    assert len({f.accepted.cancel.reason for f in firsts}) == 1
    stored = await server.app.store.get_build(build.build_id)
    assert stored is not None and stored.version == version_before + 1
    stops = [(await agent.next("stop_job")).stop_job.job_id for _ in range(3)]
    assert sorted(stops) == sorted(j.job_id for j in jobs)
    for job in jobs:
        agent.stopped(build.build_id, job.job_id)
    ends = await asyncio.gather(*(rest_of(s) for s in streams))
    finals = {end[-1].SerializeToString(deterministic=True) for end in ends}
    assert len(finals) == 1 and ends[0][-1].WhichOneof("event") == "finished"
    assert agent.received.empty(), "exactly one StopJob per job"
    await agent.leave()


async def test_force_on_a_canceling_build_escalates_to_kill_without_cleanup(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    request = pipeline()
    request.stages[0].jobs[0].steps.add(command="echo cleanup", run_on_cancel=True)
    build = (await server.stub.SubmitBuild(request)).build
    job = await agent.take_job()
    await settled(server, build.build_id, jobs=1)  # or its late JobAccepted re-sends the stop
    gentle = server.stub.Cancel(cancel_request(build.build_id, grace_period={"seconds": 60}))
    assert (await gentle.read()).accepted.status == build_pb2.BUILD_STATUS_CANCELING
    first = (await agent.next("stop_job")).stop_job
    assert first.grace_period.seconds == 60 and not first.skip_cleanup
    forced = server.stub.Cancel(cancel_request(build.build_id, force=True))
    accepted = (await forced.read()).accepted
    # The first cancel stays as asked; the force is its escalation.
    assert accepted.cancel.force is False and accepted.cancel.escalations[0].force is True
    second = (await agent.next("stop_job")).stop_job
    assert second.job_id == job.job_id
    assert second.grace_period.ToNanoseconds() == 0 and second.skip_cleanup
    got = await get(server, build.build_id)
    assert got.stages[0].jobs[0].steps[1].status == build_pb2.STEP_STATUS_CANCELED
    agent.stopped(build.build_id, job.job_id, graceful=False)
    assert (await rest_of(forced))[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    await agent.leave()


async def test_cleanup_step_runs_after_the_stop_and_its_result_is_recorded(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    request = pipeline()
    request.stages[0].jobs[0].steps.add(command="never runs")
    request.stages[0].jobs[0].steps.add(command="echo cleanup", run_on_cancel=True)
    build = (await server.stub.SubmitBuild(request)).build
    job = await agent.take_job()
    stream = server.stub.Cancel(cancel_request(build.build_id))
    await stream.read()
    stop = (await agent.next("stop_job")).stop_job
    assert not stop.skip_cleanup and stop.cleanup_timeout.seconds == 60
    # the agent stops step 0, skips step 1, runs the cleanup step 2
    agent.send(step_started={"build_id": build.build_id, "job_id": job.job_id, "step_index": 2})
    agent.send(step_finished={"build_id": build.build_id, "job_id": job.job_id, "step_index": 2})
    agent.stopped(build.build_id, job.job_id)
    assert (await rest_of(stream))[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    steps = (await get(server, build.build_id)).stages[0].jobs[0].steps
    assert [s.status for s in steps] == [
        build_pb2.STEP_STATUS_CANCELED,
        build_pb2.STEP_STATUS_CANCELED,
        build_pb2.STEP_STATUS_SUCCEEDED,
    ]
    await agent.leave()


async def test_a_cleanup_job_runs_after_the_other_jobs_stopped(server: Running) -> None:
    agent = AgentPeer(server.target, "a1", capacity=2)
    await agent.connect()
    request = pipeline(stages=2)
    request.stages[1].jobs[0].run_on_cancel = True
    build = (await server.stub.SubmitBuild(request)).build
    first = await agent.take_job()
    stream = server.stub.Cancel(cancel_request(build.build_id))
    assert (await stream.read()).accepted.status == build_pb2.BUILD_STATUS_CANCELING
    await agent.next("stop_job")
    agent.stopped(build.build_id, first.job_id)
    cleanup = await agent.take_job()  # assigned only now, during CANCELING
    assert cleanup.job_id != first.job_id
    agent.finished(build.build_id, cleanup.job_id)
    final = (await rest_of(stream))[-1].finished
    assert final.status == build_pb2.BUILD_STATUS_CANCELED
    statuses = {j.job_id: j.status for j in final.jobs}
    assert statuses == {
        first.job_id: build_pb2.JOB_STATUS_CANCELED,
        cleanup.job_id: build_pb2.JOB_STATUS_SUCCEEDED,
    }
    await agent.leave()


async def test_500_finish_versus_cancel_races_all_end_consistent(server: Running) -> None:
    agent = AgentPeer(server.target, "a1", capacity=500)
    await agent.connect()
    rng = random.Random(7)
    builds = [
        b.build
        for b in await asyncio.gather(*(server.stub.SubmitBuild(pipeline()) for _ in range(500)))
    ]
    jobs = {}
    for _ in builds:
        assign = await agent.take_job()
        jobs[assign.build_id] = assign.job_id
    # Start the races from RUNNING jobs, with no reports still in flight.
    await asyncio.gather(*(settled(server, build.build_id, 1) for build in builds))

    async def race(build: build_pb2.Build) -> tuple[str, int]:
        finish_first = rng.random() < 0.5
        if finish_first:
            agent.finished(build.build_id, jobs[build.build_id])
            # Jitter, not synchronization: the two messages travel on different
            # connections, and a few ms either way decides which the actor sees first.
            await asyncio.sleep(rng.uniform(0, 0.004))
        try:
            messages = [
                m async for m in server.stub.Cancel(cancel_request(build.build_id), timeout=WAIT)
            ]
            outcome = (
                "canceled"
                if messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
                else "?"
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            outcome = "refused"
        if not finish_first:
            agent.finished(build.build_id, jobs[build.build_id])
        return outcome, 0

    async def confirm_stops() -> None:
        while True:
            stop = (await agent.next("stop_job")).stop_job
            agent.stopped(stop.build_id, stop.job_id)

    confirmer = asyncio.create_task(confirm_stops())
    outcomes = await asyncio.gather(*(race(b) for b in builds))
    confirmer.cancel()
    for build, (outcome, _) in zip(builds, outcomes, strict=True):
        final = await get(server, build.build_id)
        job = final.stages[0].jobs[0]
        if outcome == "refused":
            assert final.status == build_pb2.BUILD_STATUS_SUCCEEDED
            assert job.status == build_pb2.JOB_STATUS_SUCCEEDED
        else:
            assert outcome == "canceled"
            assert final.status == build_pb2.BUILD_STATUS_CANCELED
            assert job.status == build_pb2.JOB_STATUS_CANCELED
    kinds = {o for o, _ in outcomes}
    assert kinds == {"refused", "canceled"}, "both orders happened"
    await agent.leave()


async def test_cancel_builds_over_1000_builds_uses_a_commit_per_growing_batch(
    stored_server: Running,
) -> None:
    server = stored_server
    # Half queued (no agent has their label), half running on an agent.
    agent = AgentPeer(server.target, "a1", capacity=500)
    await agent.connect()
    await asyncio.gather(*(server.stub.SubmitBuild(pipeline(name="big")) for _ in range(500)))
    await asyncio.gather(
        *(server.stub.SubmitBuild(pipeline(name="big", labels={"os": "none"})) for _ in range(500))
    )
    taken = [await agent.take_job() for _ in range(500)]
    # Every agent report applied first: the commits counted below are the cancel's.
    await asyncio.gather(*(settled(server, job.build_id, 1) for job in taken))
    stats = server.app.store.stats
    stream = server.stub.CancelBuilds(
        build_control_pb2.CancelBuildsRequest(pipeline="big", reason="release blocked"), timeout=60
    )
    first_terminal: list[build_control_pb2.CancelBuildsResponse] = []
    start = len(stats.batch_sizes)
    confirmed = 0
    accepted = (await stream.read()).accepted
    assert (accepted.matched, accepted.committed) == (1000, 1000)
    # the 500 queued builds end at once, in the CANCELING batch writes themselves
    while len(first_terminal) < 500:
        first_terminal.append(await stream.read())
    # The 1,000 CANCELING writes are the call's first commits. Counting every commit
    # until 500 terminal messages are read would also count what the actors write next
    # (and the audit), which a slower store (PostgreSQL) lets into that window.
    # The batches grow (8, 32, 128, 500, ...) so that the first StopJobs leave early:
    # one commit per batch, or fewer when the writer finds several queued; the audit
    # records of builds that ended in an early batch may be written in between.
    sizes = stats.batch_sizes[start:]
    batches = len(bulk_cancel.batch_sizes(1000))
    assert sum(sizes[: batches + 2]) >= 1000, f"commits of {sizes} for 1,000 CANCELING writes"
    while confirmed < 500:
        stop = (await agent.next("stop_job")).stop_job
        agent.stopped(stop.build_id, stop.job_id)
        confirmed += 1
    rest = await rest_of(stream)
    summary = rest[-1].summary
    assert (summary.matched, summary.canceled, summary.not_cancelable) == (1000, 1000, 0)
    assert len(first_terminal) + len(rest) - 1 == 1000
    page = await server.stub.ListBuilds(
        build_control_pb2.ListBuildsRequest(page_size=1000, pipeline="big")
    )
    assert {b.status for b in page.builds} == {build_pb2.BUILD_STATUS_CANCELED}
    await agent.leave()


async def test_cancel_builds_by_ids_reports_unknown_and_finished_ones(server: Running) -> None:
    queued = await submit(server, labels={"os": "none"})
    done = await submit(server, labels={"os": "none"})
    [m async for m in server.stub.Cancel(cancel_request(done.build_id))]
    missing = "b" + "0" * 20
    request = build_control_pb2.CancelBuildsRequest(
        ids=build_control_pb2.BuildIds(build_ids=[queued.build_id, done.build_id, missing])
    )
    messages = [m async for m in server.stub.CancelBuilds(request, timeout=WAIT)]
    summary = messages[-1].summary
    assert (summary.matched, summary.canceled, summary.already_canceling, summary.not_found) == (
        2,
        2,
        1,
        1,
    )
    assert messages[0].accepted.committed == 1 and messages[0].accepted.already_canceling == 1
    assert {m.build.build_id for m in messages[1:-1]} == {queued.build_id, done.build_id}


async def test_cancel_builds_with_a_malformed_id_names_it_and_changes_nothing(
    server: Running,
) -> None:
    queued = await submit(server, labels={"os": "none"})
    request = build_control_pb2.CancelBuildsRequest(
        ids=build_control_pb2.BuildIds(build_ids=[queued.build_id, "nope"])
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        [m async for m in server.stub.CancelBuilds(request)]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("ids.build_ids[1]:")
    assert (await get(server, queued.build_id)).status == build_pb2.BUILD_STATUS_QUEUED


async def test_builds_of_a_concurrency_group_run_one_at_a_time(server: Running) -> None:
    agent = AgentPeer(server.target, "a1", capacity=4)
    await agent.connect()
    first = await submit(server, concurrency_group="deploy-prod")
    second = await submit(server, concurrency_group="deploy-prod")
    job = await agent.take_job()
    assert job.build_id == first.build_id
    assert (await get(server, second.build_id)).status == build_pb2.BUILD_STATUS_QUEUED
    assert agent.received.empty(), "the second build waits for the first"
    agent.finished(first.build_id, job.job_id)
    nxt = await agent.take_job()
    assert nxt.build_id == second.build_id
    await agent.leave()


async def test_cancel_in_progress_supersedes_the_older_builds_of_the_group(server: Running) -> None:
    agent = AgentPeer(server.target, "a1", capacity=4)
    await agent.connect()
    older = await submit(server, concurrency_group="pr-42")
    waiting = await submit(server, concurrency_group="pr-42")
    job = await agent.take_job()
    newer = await submit(server, concurrency_group="pr-42", cancel_in_progress=True)
    stop = (await agent.next("stop_job")).stop_job
    assert stop.job_id == job.job_id
    agent.stopped(older.build_id, job.job_id)
    for build in (older, waiting):
        final = await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_CANCELED)
        assert final.cancel.reason == f"superseded by {newer.build_id}"
        assert final.cancel.requested_by == "server"
    runs = await agent.take_job()
    assert runs.build_id == newer.build_id
    await agent.leave()


async def test_a_watcher_that_connects_mid_cancel_sees_the_rest(server: Running) -> None:
    agent = AgentPeer(server.target, "a1", capacity=2)
    await agent.connect()
    build = await submit(server, jobs=2)
    a, b = await agent.take_job(), await agent.take_job()
    stream = server.stub.Cancel(cancel_request(build.build_id))
    await stream.read()
    agent.stopped(build.build_id, a.job_id)
    await agent.next("stop_job")
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build.build_id), timeout=WAIT
    )
    snapshot = (await watch.read()).snapshot
    assert snapshot.status == build_pb2.BUILD_STATUS_CANCELING
    agent.stopped(build.build_id, b.job_id)
    rest = await rest_of(watch)
    assert any(
        m.job_changed.job_id == b.job_id and m.job_changed.status == build_pb2.JOB_STATUS_CANCELED
        for m in rest
    )
    assert rest[-1].build_changed.status == build_pb2.BUILD_STATUS_CANCELED
    await agent.leave()


async def test_job_and_queue_timeouts_cancel_with_their_reasons(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data", job_timeout=0.3, queue_timeout=0.3) as server:
        agent = AgentPeer(server.target, "a1")
        await agent.connect()
        slow = await submit(server)
        job = await agent.take_job()
        stuck = await submit(server, labels={"os": "none"})
        stop = (await agent.next("stop_job")).stop_job
        assert stop.job_id == job.job_id
        agent.stopped(slow.build_id, job.job_id)
        timed_out = await wait_status(server, slow.build_id, build_pb2.BUILD_STATUS_CANCELED)
        assert timed_out.cancel.reason.startswith("timeout: job job0 ran longer than 0.3 s")
        queued = await wait_status(server, stuck.build_id, build_pb2.BUILD_STATUS_CANCELED)
        assert queued.cancel.reason.startswith("queue timeout")
        assert queued.stages[0].jobs[0].outcome == build_pb2.JOB_OUTCOME_NEVER_STARTED
        await agent.leave()


async def test_an_agent_that_ignores_stops_is_forced_at_the_deadline_and_marked_suspect(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    build = await submit(server)
    await agent.take_job()
    stream = server.stub.Cancel(cancel_request(build.build_id, grace_period={"seconds": 0}))
    await stream.read()
    await agent.next("stop_job")  # and ignores it
    final = (await rest_of(stream))[-1].finished
    assert final.status == build_pb2.BUILD_STATUS_CANCELED
    assert [j.outcome for j in final.jobs] == [build_pb2.JOB_OUTCOME_FORCED]
    agents = (await server.stub.ListAgents(build_control_pb2.ListAgentsRequest())).agents
    assert [(a.agent_id, a.suspect) for a in agents] == [("a1", True)]
    await agent.leave()
