"""SIGTERM to a real server process while cancels are in flight: every cancel the
server answered ACCEPTED has its StopJob reach the agent before the server exits
(the drain lets cancels under way commit and queue their stops before it tells the
agents to leave). The agent is scripted, in the test process, over a real channel."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2, build_control_pb2_grpc

from tests.support.agent_peer import AgentPeer
from tests.support.pipelines import pipeline
from tests.support.processes import start_server

WAIT = 30.0
BUILDS = 60


async def everything_until_drained(agent: AgentPeer) -> list[agent_pb2.ConnectResponse]:
    """Every message the server sent the agent up to its Drain; then the agent leaves
    (Goodbye) and what came after the Drain is added."""
    messages = []
    while True:
        message = await agent.next()
        messages.append(message)
        if message.HasField("drain"):
            break
    await agent.leave()
    while not agent.received.empty():
        messages.append(agent.received.get_nowait())
    return messages


async def test_every_cancel_accepted_during_a_sigterm_drain_gets_its_stop_to_the_agent(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path / "data")
    agent = AgentPeer(server.target, "drained", capacity=BUILDS)
    try:
        await agent.connect()
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            builds = [(await stub.SubmitBuild(pipeline())).build for _ in range(BUILDS)]
            jobs = {}
            for _ in builds:
                assign = await agent.take_job()
                jobs[assign.build_id] = assign.job_id
            calls = [
                stub.Cancel(build_control_pb2.CancelRequest(build_id=b.build_id, reason="drain"))
                for b in builds
            ]
            firsts = [asyncio.ensure_future(call.read()) for call in calls]
            await asyncio.wait(firsts, return_when=asyncio.FIRST_COMPLETED)
            server.process.send_signal(signal.SIGTERM)  # with most cancels still in flight
            answers = await asyncio.gather(*firsts, return_exceptions=True)
            received = await everything_until_drained(agent)
            for call in calls:
                call.cancel()
        assert await asyncio.wait_for(server.process.wait(), WAIT) == 0
    finally:
        if server.process.returncode is None:
            await server.kill()

    accepted = {
        build.build_id
        for build, answer in zip(builds, answers, strict=True)
        if isinstance(answer, build_control_pb2.CancelResponse) and answer.HasField("accepted")
    }
    refused = [answer for answer in answers if isinstance(answer, BaseException)]
    assert accepted, "no cancel was accepted before the drain"
    # Refused by the draining server (UNAVAILABLE), or never handed to it: calls still
    # queued in gRPC when it stops end CANCELLED. Neither was accepted.
    assert {a.code() for a in refused if isinstance(a, grpc.aio.AioRpcError)} <= {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
    }
    assert all(isinstance(a, grpc.aio.AioRpcError) for a in refused)
    assert len(accepted) + len(refused) == BUILDS
    stopped = {m.stop_job.job_id for m in received if m.HasField("stop_job")}
    missing = sorted(build for build in accepted if jobs[build] not in stopped)
    assert missing == [], f"{len(missing)} of {len(accepted)} accepted cancels sent no stop"
    kinds = [m.WhichOneof("event") for m in received]
    assert "drain" in kinds
    # Every stop went out before the Drain that tells the agent to leave.
    assert all(kind != "stop_job" for kind in kinds[kinds.index("drain") :])
