"""The cancel path costs a constant number of transactions (the store's own counters)."""

from __future__ import annotations

import asyncio

import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import rest_of, settled
from tests.support.pipelines import pipeline
from tests.support.servers import Running
from tests.support.store_faults import StoreFaults


@pytest.fixture
def server(stored_server: Running) -> Running:
    """Every test here counts the store's commits: each runs on every backend."""
    return stored_server


def twenty_by_five() -> build_control_pb2.SubmitBuildRequest:
    request = pipeline(jobs=20)
    for job in request.stages[0].jobs:
        job.steps.extend([build_control_pb2.StepSpec(command=f"echo {k}") for k in range(4)])
    return request


async def test_cancel_of_20_jobs_x_5_steps_is_one_commit_then_one_when_forced(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "a1", capacity=20)
    await agent.connect()
    build = (await server.stub.SubmitBuild(twenty_by_five())).build
    for _ in range(20):
        await agent.take_job()
    await settled(server, build.build_id, 20)
    stats = server.app.store.stats
    before = stats.commits
    stream = server.stub.Cancel(
        build_control_pb2.CancelRequest(build_id=build.build_id, force=True), timeout=10
    )
    assert (await stream.read()).accepted.jobs_stopping == 20
    assert stats.commits == before + 1, "CANCELING of 20 jobs and 100 steps is one commit"
    # The agent never confirms: at the deadline all 20 jobs end FORCED together.
    rest = await rest_of(stream)
    # The audit record committed with the CANCELED write: there once the stream ends.
    assert [r.build_id for r in await server.app.store.audit_records([build.build_id])] == [
        build.build_id
    ]
    # CANCELING, then CANCELED with its audit record (20 jobs, 100 steps, one record).
    assert stats.commits == before + 2
    finished = rest[-1].finished
    assert finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert {j.outcome for j in finished.jobs} == {build_pb2.JOB_OUTCOME_FORCED}
    await agent.leave()


async def test_confirmations_of_many_jobs_share_commits(server: Running) -> None:
    agent = AgentPeer(server.target, "a1", capacity=20)
    await agent.connect()
    build = (await server.stub.SubmitBuild(twenty_by_five())).build
    jobs = [await agent.take_job() for _ in range(20)]
    await settled(server, build.build_id, 20)
    stats = server.app.store.stats
    stream = server.stub.Cancel(
        build_control_pb2.CancelRequest(build_id=build.build_id), timeout=10
    )
    await stream.read()
    before = stats.commits
    for _ in jobs:
        await agent.next("stop_job")
    for job in jobs:
        agent.stopped(build.build_id, job.job_id)
    rest = await rest_of(stream)
    assert rest[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    used = stats.commits - before
    assert 1 <= used < 20, f"{used} commits for 20 confirmations"
    await agent.leave()


async def test_200_concurrent_cancels_share_at_most_50_commits(server: Running) -> None:
    agent = AgentPeer(server.target, "a1", capacity=200)
    await agent.connect()
    builds = await asyncio.gather(*(server.stub.SubmitBuild(pipeline()) for _ in range(200)))
    for _ in builds:
        await agent.take_job()
    for response in builds:
        await settled(server, response.build.build_id, 1)
    stats = server.app.store.stats
    before = stats.commits
    # The cancels' writes wait until all 200 are under way, as they would behind a slow
    # commit: then they must share transactions, however fast the machine sends them.
    faults = StoreFaults(server.app.store)
    faults.hold_writes()
    streams = [
        server.stub.Cancel(build_control_pb2.CancelRequest(build_id=b.build.build_id), timeout=20)
        for b in builds
    ]
    await faults.held(200)
    faults.release()
    firsts = await asyncio.gather(*(s.read() for s in streams))
    assert {f.WhichOneof("event") for f in firsts} == {"accepted"}
    # The agent has not confirmed any stop yet: every commit here is a CANCELING write.
    commits = stats.commits - before
    assert commits <= 50, f"200 cancels used {commits} commits"
    for stream in streams:
        stream.cancel()
    await agent.leave()
