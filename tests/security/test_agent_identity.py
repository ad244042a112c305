"""An agent token speaks for one agent id: it connects only as that id and reports only
on jobs assigned to it; one live session per agent id."""

from __future__ import annotations

import grpc
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2, build_pb2

from tests.security.scripted import running_build
from tests.support.secure_servers import SecureServer


async def test_agent_a_reporting_on_agent_bs_job_is_refused_and_the_job_is_unchanged(
    server: SecureServer,
) -> None:
    build_id, agent_b = await running_build(server, "alice", agent_id="agent-b")
    job_id = f"{build_id}-j0"
    agent_a = server.agent("agent-a")
    await agent_a.connect()
    before = await server.snapshot(build_id)

    agent_a.send(
        job_finished=agent_pb2.JobFinished(build_id=build_id, job_id=job_id, succeeded=True)
    )
    code, details = await agent_a.ended()

    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert job_id in details and "agent-a" in details
    assert await server.snapshot(build_id) == before
    job = (await server.get(build_id)).stages[0].jobs[0]
    assert job.status == build_pb2.JOB_STATUS_RUNNING and job.agent_id == "agent-b"
    # B still owns its job and may finish it.
    agent_b.send(
        job_finished=agent_pb2.JobFinished(build_id=build_id, job_id=job_id, succeeded=True)
    )
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id), metadata=server.auth("root")
    )
    statuses = [m.snapshot.status or m.build_changed.status async for m in watch]
    assert statuses[-1] == build_pb2.BUILD_STATUS_SUCCEEDED
    await agent_b.leave()


async def test_a_report_hidden_in_a_hello_is_not_applied_either(server: SecureServer) -> None:
    build_id, agent_b = await running_build(server, "alice", agent_id="agent-b")
    job_id = f"{build_id}-j0"
    before = await server.snapshot(build_id)
    agent_a = server.agent("agent-a")
    hello = agent_pb2.Hello(
        agent_id="agent-a",
        capacity=1,
        finished_jobs=[agent_pb2.JobFinished(build_id=build_id, job_id=job_id, succeeded=True)],
    )
    await agent_a.connect(hello=hello)
    # The re-sent report was ignored (it is not A's job); A's session is fine.
    assert await server.snapshot(build_id) == before
    await agent_a.leave()
    await agent_b.drop()


async def test_a_token_of_agent_a_claiming_agent_b_is_denied(server: SecureServer) -> None:
    agent_b = server.agent("agent-b")
    await agent_b.connect()
    impostor = server.agent("agent-b", as_token_of="agent-a")
    code, details = await impostor.refused()
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "agent-a" in details and "agent-b" in details
    # The real B keeps its one session: the impostor replaced nothing.
    sessions = server.app.hub.sessions()
    assert len(sessions) == 1 and sessions[0].agent_id == "agent-b"
    assert not agent_b.closed.is_set()
    await agent_b.leave()


async def test_a_second_connect_replaces_the_first_never_two_sessions(
    server: SecureServer,
) -> None:
    first = server.agent("agent-a")
    await first.connect()
    second = server.agent("agent-a")
    await second.connect()
    code, details = await first.ended()
    assert code is grpc.StatusCode.ABORTED and "replaced" in details
    sessions = server.app.hub.sessions()
    assert len(sessions) == 1
    listed = await server.stub.ListAgents(
        build_control_pb2.ListAgentsRequest(), metadata=server.auth("root")
    )
    assert [(a.agent_id, a.connected) for a in listed.agents] == [("agent-a", True)]
    await second.leave()
