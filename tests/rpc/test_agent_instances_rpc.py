"""One agent process per agent id: the Hello's instance_id tells a reconnect of the
same process (it replaces its old stream) from a second process under a live id (it
is refused ALREADY_EXISTS, and nothing of the first one changes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from buildcontrol_client import Agent, AgentOptions
from buildcontrol_client.agent_refusals import AgentRefused
from buildcontrol_client.backoff import BackoffPolicy
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from grpc_status import rpc_status

from tests.support.agent_peer import AgentPeer
from tests.support.pipelines import pipeline
from tests.support.servers import Running

WAIT = 10.0


async def test_a_reconnect_of_the_same_agent_process_replaces_its_old_stream(
    server: Running,
) -> None:
    first = AgentPeer(server.target, "a1", instance_id="process-1")
    await first.connect()
    again = AgentPeer(server.target, "a1", instance_id="process-1")
    await again.connect()
    await asyncio.wait_for(first.closed.wait(), WAIT)
    assert first.status == grpc.StatusCode.ABORTED
    assert "replaced by a newer stream of agent a1" in first.details
    [session] = server.app.hub.sessions()
    assert session.instance_id == "process-1" and not session.closed
    await again.leave()


async def test_a_second_process_under_a_connected_agent_id_is_refused_already_exists(
    server: Running,
) -> None:
    first = AgentPeer(server.target, "a1", capacity=1, instance_id="process-1")
    await first.connect()
    build = (await server.stub.SubmitBuild(pipeline())).build
    job = await first.take_job()
    [session] = server.app.hub.sessions()

    second = AgentPeer(server.target, "a1", instance_id="process-2")
    code, details = await second.refused()

    assert code is grpc.StatusCode.ALREADY_EXISTS
    assert "agent a1 is already connected from another process" in details
    # Nothing changed: the first stream is the agent's session, open, its job running.
    assert server.app.hub.sessions() == [session] and not session.closed
    assert not first.closed.is_set()
    got = (
        await server.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build.build_id))
    ).build
    assert got.stages[0].jobs[0].status == build_pb2.JOB_STATUS_RUNNING
    assert got.stages[0].jobs[0].agent_id == "a1"
    first.finished(build.build_id, job.job_id)
    await first.leave()


async def test_the_refusal_carries_a_stable_reason(server: Running) -> None:
    first = AgentPeer(server.target, "a1", instance_id="process-1")
    await first.connect()
    second = AgentPeer(server.target, "a1", instance_id="process-2")
    second.open()
    await asyncio.wait_for(second.closed.wait(), WAIT)
    assert second.error is not None
    status = rpc_status.from_call(second.error)
    assert status is not None
    assert "AGENT_ALREADY_CONNECTED" in str(status.details)
    await first.leave()


async def test_another_process_may_take_the_id_once_the_first_left(server: Running) -> None:
    first = AgentPeer(server.target, "a1", instance_id="process-1")
    await first.connect()
    await first.leave()
    second = AgentPeer(server.target, "a1", instance_id="process-2")
    await second.connect()
    [session] = server.app.hub.sessions()
    assert session.instance_id == "process-2"
    await second.leave()


async def test_agents_that_send_no_instance_id_replace_each_other_as_before(
    server: Running,
) -> None:
    first = AgentPeer(server.target, "a1")
    await first.connect()
    second = AgentPeer(server.target, "a1", instance_id="process-2")
    await second.connect()
    await asyncio.wait_for(first.closed.wait(), WAIT)
    assert first.status == grpc.StatusCode.ABORTED
    await second.leave()


async def test_the_reference_agent_refused_for_a_live_id_gives_up_naming_it(
    server: Running, tmp_path: Path
) -> None:
    first = AgentPeer(server.target, "a1", instance_id="process-1")
    await first.connect()
    options = AgentOptions(
        backoff=BackoffPolicy(initial=0.02, maximum=0.1),
        work_dir=tmp_path,
        id_taken_patience_seconds=0.2,  # refused again and again, then it gives up
    )
    agent = Agent(server.target, "a1", options=options)
    assert agent.instance_id and agent.instance_id != "process-1"
    try:
        await asyncio.wait_for(agent.run(), WAIT)
    except AgentRefused as refused:
        assert "ALREADY_EXISTS" in str(refused) and "agent a1" in str(refused)
    else:
        raise AssertionError("the second agent process was not refused")
    assert not first.closed.is_set()
    await first.leave()
