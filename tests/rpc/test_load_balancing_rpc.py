"""One client target naming two real servers (each on its own SQLite data dir): the
calls are spread round-robin, a server that refuses (stopping) has its idempotent calls
retried on the other, and once it is gone the other answers everything.

Each server holds a build of its own, so a ListBuilds answer says which one answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.errors import Unavailable
from buildcontrol_client.sync_client import SyncBuildControlClient
from buildcontrol_proto.v1 import build_control_pb2_grpc, build_pb2
from buildcontrol_server.app import ServerApp

from tests.support.pipelines import pipeline
from tests.support.servers import settings_for

CALLS = 200


@dataclass
class Replica:
    name: str
    app: ServerApp
    target: str
    build_id: str
    stopped: bool = False

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.app.stop()


@asynccontextmanager
async def replica(name: str, data_dir: Path) -> AsyncIterator[Replica]:
    """A server with one queued build (no agent: it stays QUEUED)."""
    app = ServerApp(settings_for(data_dir))
    endpoints = await app.start()
    target = f"127.0.0.1:{endpoints.grpc_port}"
    running = Replica(name, app, target, "")
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            running.build_id = (await stub.SubmitBuild(pipeline(name=name))).build.build_id
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[Replica, Replica]]:
    async with replica("a", tmp_path / "a") as a, replica("b", tmp_path / "b") as b:
        yield a, b


def one_address(*replicas: Replica) -> str:
    return "ipv4:" + ",".join(r.target for r in replicas)


async def answered_by(client: BuildControlClient) -> str:
    """The pipeline name of the one build the answering server holds: "a" or "b"."""
    builds, _ = await client.list()
    (build,) = builds
    return build.pipeline


async def both_connected(client: BuildControlClient) -> list[str]:
    """Call until both servers answered (the channel connects to each in its own time),
    then return the next ten answers."""
    seen = set()
    for _ in range(CALLS):
        seen.add(await answered_by(client))
        if seen == {"a", "b"}:
            return [await answered_by(client) for _ in range(10)]
    raise AssertionError(f"only {seen} answered in {CALLS} calls: the calls are not spread")


async def test_round_robin_spreads_the_calls_over_both_servers(
    replicas: tuple[Replica, Replica],
) -> None:
    async with BuildControlClient(one_address(*replicas)) as client:
        answers = await both_connected(client)
    # Once both are connected, each call goes to the next one in turn.
    assert answers in (["a", "b"] * 5, ["b", "a"] * 5)


async def test_a_stopping_servers_cancels_and_keyed_submits_are_retried_on_the_other(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    async with BuildControlClient(one_address(a, b)) as client:
        await both_connected(client)
        # The first step of b's shutdown: from here it refuses submits and cancels
        # (UNAVAILABLE), while its connections stay up. Held there, so that calls keep
        # reaching it instead of racing the rest of its stop.
        b.app.control.begin_drain()
        with pytest.raises(Unavailable):
            for _ in range(2):  # one of two calls in turn is b's
                await client.submit(pipeline(name="unkeyed"))
        submitted = [
            await client.submit(pipeline(name="a"), request_id=f"key-{n}") for n in range(4)
        ]
        canceled = [await client.cancel_and_wait(build.build_id) for build in submitted]
    assert [c.status for c in canceled] == [build_pb2.BUILD_STATUS_CANCELED] * 4
    # Every keyed submit and every cancel was made on a, the one server taking them.
    async with BuildControlClient(a.target) as on_a:
        for build in submitted:
            assert (await on_a.get(build.build_id)).status == build_pb2.BUILD_STATUS_CANCELED


async def test_a_stopped_servers_reads_are_answered_by_the_other(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    async with BuildControlClient(one_address(a, b)) as client:
        await both_connected(client)
        await b.stop()
        answers = [await answered_by(client) for _ in range(10)]
        builds = [await client.get(a.build_id) for _ in range(10)]
    assert answers == ["a"] * 10
    assert {build.build_id for build in builds} == {a.build_id}


async def test_the_blocking_client_spreads_its_calls_over_both_servers_too(
    replicas: tuple[Replica, Replica],
) -> None:
    def answers() -> list[str]:
        # A thread of its own: the servers run on this test's event loop.
        with SyncBuildControlClient(one_address(*replicas)) as client:

            def answered_by() -> str:
                return str(client.list()[0][0].pipeline)

            seen = set()
            for _ in range(CALLS):
                seen.add(answered_by())
                if seen == {"a", "b"}:
                    return [answered_by() for _ in range(10)]
        raise AssertionError(f"only {seen} answered: the blocking client's calls are not spread")

    assert await asyncio.to_thread(answers) in (["a", "b"] * 5, ["b", "a"] * 5)
