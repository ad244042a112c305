"""PostgreSQL itself dies mid-cancel (pg_ctl stop -m immediate) and comes back: the
server, never restarted, goes NOT_SERVING, refuses writes with UNAVAILABLE meanwhile,
comes back SERVING, and every build still ends CANCELED with no step process left."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.build_waits import all_steps_running, build_of, until_terminal
from tests.support.postgres_server import PostgresServer
from tests.support.processes import AgentProc, alive, job_pids, start_agent, start_server

Stub = build_control_pb2_grpc.BuildControlStub
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_becomes(channel: grpc.aio.Channel, wanted: int) -> None:
    """Health.Watch streams every change of the status: no polling."""
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=""), timeout=60
    )
    async for response in watch:
        if response.status == wanted:
            watch.cancel()
            return


async def cancel(stub: Stub, build_id: str, reason: str) -> None:
    async for _ in stub.Cancel(
        build_control_pb2.CancelRequest(build_id=build_id, reason=reason), timeout=60
    ):
        pass


async def cancel_until_accepted(stub: Stub, build_id: str, reason: str) -> None:
    """What a client does with UNAVAILABLE: try again (here, once health is back)."""
    while True:
        try:
            await cancel(stub, build_id, reason)
            return
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise


@pytest.mark.timeout(180)
async def test_server_rides_out_a_postgres_restart_mid_cancel(
    tmp_path: Path, agents: list[AgentProc], postgres: PostgresServer, postgres_url: str
) -> None:
    server = await start_server(tmp_path / "data", "--store", postgres_url, "--default-grace", "2")
    try:
        for n in range(2):
            agents.append(await start_agent(server.target, f"agent-{n}", tmp_path, "os=linux", 20))
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = Stub(channel)
            builds = [
                (await stub.SubmitBuild(build_of(2, "sleep 600"))).build.build_id for _ in range(20)
            ]
            await asyncio.gather(*(all_steps_running(stub, b) for b in builds))
            job_ids = [
                j.job_id
                for b in builds
                for s in (
                    await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=b))
                ).build.stages
                for j in s.jobs
            ]
            first, rest = builds[:10], builds[10:]
            # Half the cancels are accepted (committed) before the database dies.
            accepted = [asyncio.create_task(cancel(stub, b, "before")) for b in first]
            down = asyncio.create_task(health_becomes(channel, NOT_SERVING))
            await asyncio.gather(*accepted)

            postgres.stop("immediate")
            try:
                await asyncio.wait_for(down, 30)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await cancel(stub, rest[0], "during")
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            finally:
                postgres.start()

            await asyncio.wait_for(health_becomes(channel, SERVING), 60)
            await asyncio.gather(*(cancel_until_accepted(stub, b, "after") for b in rest))
            finals = await asyncio.gather(*(until_terminal(stub, b) for b in builds))
        for build in finals:
            assert build.status == build_pb2.BUILD_STATUS_CANCELED, build.build_id
            expected = "before" if build.build_id in first else "after"
            assert build.cancel.reason == expected
        leftovers = [pid for job in job_ids for pid in job_pids(job) if alive(pid)]
        assert leftovers == [], "step processes left running"
    finally:
        assert await server.stop() == 0
