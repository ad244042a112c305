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

from tests.support.agent_peer import AgentPeer
from tests.support.pipelines import pipeline
from tests.support.servers import Running

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


def freed(thing: object) -> tuple[weakref.ref[object], asyncio.Event]:
    """A weak reference to `thing` and an event set the moment `thing` is freed (by
    reference counting: the cycle collector is off in these tests)."""
    gone = asyncio.Event()
    return weakref.ref(thing, lambda _: gone.set()), gone


async def wait_freed(gone: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(gone.wait(), WAIT)
    except TimeoutError:
        raise AssertionError(f"{what} is only reachable through a cycle") from None


async def test_cancelled_running_build_is_freed_without_the_cycle_collector(
    server: Running, no_cycle_collector: None
) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    build = (await server.stub.SubmitBuild(pipeline())).build
    assign = await agent.take_job()
    actor = server.app.registry.get(build.build_id)
    assert actor is not None
    actor_ref, actor_gone = freed(actor)
    build_ref, build_gone = freed(actor.build)
    del actor
    calls = server.stub.Cancel(
        build_control_pb2.CancelRequest(build_id=build.build_id), timeout=WAIT
    )
    stop = (await agent.next("stop_job")).stop_job
    agent.stopped(stop.build_id, stop.job_id)
    messages = [message async for message in calls]
    assert messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert assign.job_id == stop.job_id
    await wait_freed(actor_gone, "the retired actor")
    await wait_freed(build_gone, "the finished build")
    assert actor_ref() is None and build_ref() is None
    assert server.app.registry.get(build.build_id) is None
    await agent.leave()


async def test_cancelled_queued_build_is_freed_without_the_cycle_collector(
    server: Running, no_cycle_collector: None
) -> None:
    build = (await server.stub.SubmitBuild(pipeline())).build
    actor = server.app.registry.get(build.build_id)
    assert actor is not None
    actor_ref, actor_gone = freed(actor)
    del actor
    request = build_control_pb2.CancelRequest(build_id=build.build_id)
    messages = [m async for m in server.stub.Cancel(request, timeout=WAIT)]
    assert messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    await wait_freed(actor_gone, "the retired actor")
    assert actor_ref() is None
    assert server.app.registry.get(build.build_id) is None
