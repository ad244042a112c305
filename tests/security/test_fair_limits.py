"""Fair limits through the real server: one principal (or agent token, or connection)
fills its bound, the next call is refused with RESOURCE_EXHAUSTED naming the bound and
its flag, nothing is created or changed, and other principals are not affected. The
bounds are shrunk through the same Settings the serve flags fill."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from prometheus_client import REGISTRY

from tests.support.secure_servers import SecureServer, cancel_all, secure_server

BOUNDS: dict[str, Any] = {
    "max_watch_streams_per_principal": 2,
    "max_live_builds_per_principal": 2,
    "max_agent_streams_per_token": 1,
    "hello_running_jobs_factor": 4,
    "max_agent_capacity": 8,
}


@pytest.fixture
async def bounded(tmp_path: Path) -> AsyncIterator[SecureServer]:
    async with secure_server(tmp_path, **BOUNDS) as server:
        yield server


def gauge(name: str, limit: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"limit": limit})


async def stored_ids(server: SecureServer) -> list[str]:
    return [b.build_id for b in await server.app.store.list_builds(100, None, None)]


def watch(
    server: SecureServer, who: str, build_id: str, channel: Any = None, timeout: float = 30
) -> Any:
    stub = server.stub if channel is None else type(server.stub)(channel)
    return stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id),
        metadata=server.auth(who),
        timeout=timeout,
    )


async def test_watch_streams_per_principal(bounded: SecureServer) -> None:
    build = await bounded.submit("alice")
    before = await bounded.snapshot(build.build_id)
    open_watches = [watch(bounded, "victor", build.build_id) for _ in range(2)]
    for call in open_watches:
        assert (await call.read()).snapshot.build_id == build.build_id
    assert gauge("buildcontrol_limit_in_use", "watch_streams_per_principal") == 2
    assert gauge("buildcontrol_limit_max", "watch_streams_per_principal") == 2

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await watch(bounded, "victor", build.build_id).read()
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = refused.value.details() or ""
    assert "WatchBuild" in details and "--max-watch-streams-per-principal" in details
    assert "victor" in details
    # Another principal is not affected, and the build did not change.
    other = watch(bounded, "bob", build.build_id)
    assert (await other.read()).snapshot.build_id == build.build_id
    other.cancel()
    for call in open_watches:
        call.cancel()
    assert await bounded.snapshot(build.build_id) == before


async def test_live_builds_per_principal(bounded: SecureServer) -> None:
    first = await bounded.submit("alice")
    await bounded.submit("alice")
    assert gauge("buildcontrol_limit_in_use", "live_builds_per_principal") == 2
    stored = await stored_ids(bounded)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await bounded.submit("alice")
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = refused.value.details() or ""
    assert "live" in details and "--max-live-builds-per-principal" in details
    assert await stored_ids(bounded) == stored
    assert len(bounded.app.registry) == 2
    # Bob has his own allowance.
    assert (await bounded.submit("bob")).status == build_pb2.BUILD_STATUS_QUEUED
    # A build that ends gives its slot back.
    messages = await cancel_all(bounded, "alice", first.build_id, reason="make room")
    assert messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert (await bounded.submit("alice")).status == build_pb2.BUILD_STATUS_QUEUED


async def test_agent_streams_per_agent_token(bounded: SecureServer) -> None:
    first = bounded.agent("agent-a")
    await first.connect()
    session = bounded.app.hub.session("agent-a")
    assert gauge("buildcontrol_limit_in_use", "agent_streams_per_token") == 1
    code, details = await bounded.agent("agent-a").refused()
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "agent streams" in details and "--max-agent-streams-per-token" in details
    # The refused stream did not replace the open one; another token still connects.
    assert bounded.app.hub.session("agent-a") is session
    assert not first.closed.is_set()
    other = bounded.agent("agent-b")
    await other.connect()
    await other.leave()
    await first.leave()


async def test_a_hello_claiming_more_running_jobs_than_capacity_allows_is_refused(
    bounded: SecureServer,
) -> None:
    bogus = [(f"b{n:020x}", f"j{n}") for n in range(5)]  # capacity 1 x factor 4 = 4
    agent = bounded.agent("agent-a", capacity=1)
    code, details = await agent.refused(agent.hello(running=bogus))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "hello.running_jobs" in details and "--hello-running-jobs-factor" in details
    assert bounded.app.hub.sessions() == []  # no session, and no StopJob was written

    # At the bound the claims are answered (one stop per job the server does not know).
    at_bound = bounded.agent("agent-a", capacity=1)
    await at_bound.connect(running=bogus[:4])
    stops = {(await at_bound.next("stop_job")).stop_job.job_id for _ in range(4)}
    assert stops == {job for _, job in bogus[:4]}
    await at_bound.leave()


async def test_a_hello_claiming_more_capacity_than_allowed_is_refused(
    bounded: SecureServer,
) -> None:
    agent = bounded.agent("agent-a", capacity=9)
    code, details = await agent.refused()
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "hello.capacity" in details and "--max-agent-capacity" in details
    assert bounded.app.hub.sessions() == []


async def test_streams_per_connection_make_a_caller_wait_not_the_others(
    tmp_path: Path,
) -> None:
    async with secure_server(tmp_path, max_streams_per_connection=2) as server:
        build = await server.submit("alice")
        assert gauge("buildcontrol_limit_max", "streams_per_connection") == 2
        held = [watch(server, "victor", build.build_id) for _ in range(2)]
        for call in held:
            await call.read()
        # A third call on the same connection waits for a free stream: it cannot
        # succeed while both are held, so a short deadline is not a timing margin.
        third = watch(server, "victor", build.build_id, timeout=2)
        with pytest.raises(grpc.aio.AioRpcError) as waited:
            await third.read()
        assert waited.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # Another connection is not affected (a subchannel pool of its own: channels
        # with equal arguments would otherwise share the first one's connection).
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(server.target, options=options) as channel:
            other = watch(server, "bob", build.build_id, channel)
            assert (await other.read()).snapshot.build_id == build.build_id
            other.cancel()
        for call in held:
            call.cancel()
