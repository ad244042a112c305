"""A finished build's actor is freed by reference counting as soon as it retires: it
leaves no reference cycle for the cyclic garbage collector to find (with thousands of
live builds, every full collection of such garbage paused the server for hundreds of
milliseconds; bench/ measures it)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.rpc.conftest import Running, pipeline
from tests.support.agent_peer import AgentPeer

WAIT = 10.0


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def _retired(server: Running, build_id: str) -> None:
    for _ in range(200):
        if server.app.registry.get(build_id) is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the actor of {build_id} did not retire")


async def test_cancelled_running_build_is_freed_without_the_cycle_collector(
    server: Running, no_cycle_collector: None
) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    build = (await server.stub.SubmitBuild(pipeline())).build
    assign = await agent.take_job()
    actor = server.app.registry.get(build.build_id)
    assert actor is not None
    actor_ref, build_ref = weakref.ref(actor), weakref.ref(actor.build)
    del actor
    calls = server.stub.Cancel(
        build_control_pb2.CancelRequest(build_id=build.build_id), timeout=WAIT
    )
    stop = (await agent.next("stop_job")).stop_job
    agent.stopped(stop.build_id, stop.job_id)
    messages = [message async for message in calls]
    assert messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert assign.job_id == stop.job_id
    await _retired(server, build.build_id)
    await asyncio.sleep(0.05)  # the Cancel stream's own task lets go of its events
    assert actor_ref() is None, "the retired actor is only reachable through a cycle"
    assert build_ref() is None
    await agent.leave()


async def test_cancelled_queued_build_is_freed_without_the_cycle_collector(
    server: Running, no_cycle_collector: None
) -> None:
    build = (await server.stub.SubmitBuild(pipeline())).build
    actor = server.app.registry.get(build.build_id)
    assert actor is not None
    actor_ref = weakref.ref(actor)
    del actor
    request = build_control_pb2.CancelRequest(build_id=build.build_id)
    messages = [m async for m in server.stub.Cancel(request, timeout=WAIT)]
    assert messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    await _retired(server, build.build_id)
    await asyncio.sleep(0.05)
    assert actor_ref() is None, "the retired actor is only reachable through a cycle"
