"""Builds brought to a known state through the real protocol, for the security tests."""

from __future__ import annotations

from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.support.agent_peer import AgentPeer
from tests.support.secure_servers import SecureServer


async def settled(server: SecureServer, build_id: str) -> None:
    """Wait (on the watch stream, not a clock) until every job's first step RUNS."""
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id),
        metadata=server.auth("root"),
        timeout=10,
    )
    snapshot = (await watch.read()).snapshot
    jobs = {j.job_id for s in snapshot.stages for j in s.jobs}
    running = {
        j.job_id
        for s in snapshot.stages
        for j in s.jobs
        if j.steps[0].status == build_pb2.STEP_STATUS_RUNNING
    }
    while running != jobs:
        event = await watch.read()
        if (
            event.WhichOneof("event") == "step_changed"
            and event.step_changed.status == build_pb2.STEP_STATUS_RUNNING
        ):
            running.add(event.step_changed.job_id)
    watch.cancel()


async def running_build(
    server: SecureServer, who: str, pipeline: str = "web", agent_id: str = "agent-a"
) -> tuple[str, AgentPeer]:
    """A build submitted by `who`, its one job RUNNING on a scripted agent."""
    agent = server.agent(agent_id)
    await agent.connect()
    build = await server.submit(who, name=pipeline)
    await agent.take_job()
    await settled(server, build.build_id)
    return build.build_id, agent
