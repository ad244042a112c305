"""`buildcontrol serve` as a process: health during a SIGTERM drain, as a client sees
it, and `--log-format json`."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import rest_of
from tests.support.pipelines import pipeline
from tests.support.processes import serve

WAIT = 20.0
SERVICES = ("", "buildcontrol.v1.BuildControl", "buildcontrol.v1.AgentService")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_health_turns_not_serving_for_every_service_during_a_sigterm_drain(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path / "data") as server:
        # An agent that stays connected after the Drain: its stream keeps
        # server.stop(grace) busy, so the drain lasts until the agent leaves.
        agent = AgentPeer(server.target, "a1")
        await agent.connect()
        async with grpc.aio.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in SERVICES:
                request = health_pb2.HealthCheckRequest(service=service)
                assert (await health.Check(request)).status == SERVING, service
            watches = [health.Watch(health_pb2.HealthCheckRequest(service=s)) for s in SERVICES]
            for watch in watches:
                assert (await asyncio.wait_for(watch.read(), WAIT)).status == SERVING

            server.process.send_signal(signal.SIGTERM)
            for service, watch in zip(SERVICES, watches, strict=True):
                status = (await asyncio.wait_for(watch.read(), WAIT)).status
                assert status == NOT_SERVING, service
            # NOT_SERVING came first, then the agents were told to leave.
            drain = await agent.next("drain")
            assert drain.drain.reason
            assert server.process.returncode is None, "still draining: the agent holds it"
            for watch in watches:
                watch.cancel()  # open watches would hold the drain too
        await agent.leave()
        assert await asyncio.wait_for(server.process.wait(), WAIT) == 0


async def test_serve_with_log_format_json_writes_cancel_events_as_json_lines(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path / "data", "--log-format", "json") as server:
        agent = AgentPeer(server.target, "a1")
        await agent.connect()
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            build = (await stub.SubmitBuild(pipeline())).build
            job = await agent.take_job()
            cancel = stub.Cancel(
                build_control_pb2.CancelRequest(
                    build_id=build.build_id, reason="wrong branch", requested_by="alice"
                ),
                timeout=WAIT,
            )
            assert (await cancel.read()).WhichOneof("event") == "accepted"
            await agent.next("stop_job")
            agent.stopped(build.build_id, job.job_id)
            events = await rest_of(cancel)
            assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
        await agent.leave()
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), WAIT) == 0

    lines = server.log.read_text().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    of_build = {r["event"]: r for r in records if r.get("build_id") == build.build_id}
    assert {"cancel_accepted", "stop_sent", "job_stopped", "cancel_finished"} <= of_build.keys()
    finished = of_build["cancel_finished"]
    assert (finished["requested_by"], finished["reason"]) == ("alice", "wrong branch")
    assert finished["outcomes"] == {"GRACEFUL": 1}
    assert finished["duration_ms"] >= 0
    assert of_build["job_stopped"]["outcome"] == "GRACEFUL"
