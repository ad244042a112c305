"""Start-up: health stays NOT_SERVING until every unfinished build is recovered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from buildcontrol_server.app import ServerApp
from buildcontrol_server.domain.model import Build
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.ports import free_port
from tests.support.servers import settings_for


async def test_health_is_not_serving_until_recovery_has_loaded(
    tmp_path: Path, store_url: str | None
) -> None:
    port = free_port()
    settings = settings_for(tmp_path / "data", listen=f"127.0.0.1:{port}", store_url=store_url)
    app = ServerApp(settings)
    loading = asyncio.Event()
    release = asyncio.Event()
    load = app.store.load_unfinished

    async def gated_load() -> list[Build]:
        # Hold recovery open, so the test can look at health while it runs.
        loading.set()
        await release.wait()
        return await load()

    app.store.load_unfinished = gated_load  # type: ignore[method-assign]
    starting = asyncio.create_task(app.start())
    await asyncio.wait_for(loading.wait(), 10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        during = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert during.status == health_pb2.HealthCheckResponse.NOT_SERVING
        release.set()
        await asyncio.wait_for(starting, 10)
        after = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert after.status == health_pb2.HealthCheckResponse.SERVING
    await app.stop()
