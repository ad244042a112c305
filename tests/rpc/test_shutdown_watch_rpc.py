"""A shutdown does not wait out its grace for open WatchBuild streams: they end at once
with UNAVAILABLE ("draining"), so `buildcontrol watch` reconnects elsewhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc
from buildcontrol_server.app import ServerApp

from tests.support.pipelines import pipeline
from tests.support.servers import settings_for

# Far longer than the test may take: a watch that held the shutdown would show.
GRACE = 60.0


async def test_open_watches_end_unavailable_at_once_when_the_server_stops(tmp_path: Path) -> None:
    app = ServerApp(settings_for(tmp_path / "data", shutdown_grace=GRACE))
    endpoints = await app.start()
    stopping: asyncio.Task[None] | None = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}") as channel:
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            build = (await stub.SubmitBuild(pipeline())).build  # QUEUED: no agent
            watch = stub.WatchBuild(build_control_pb2.WatchBuildRequest(build_id=build.build_id))
            assert (await watch.read()).WhichOneof("event") == "snapshot"
            stopping = asyncio.create_task(app.stop())
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await asyncio.wait_for(watch.read(), 10)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "draining" in (ended.value.details() or "")
        await asyncio.wait_for(stopping, 10)
    finally:
        if stopping is None:
            await app.stop()
