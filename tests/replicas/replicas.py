"""Replicas as users run them, for the tests of this folder: `buildcontrol serve
--replicas on` processes on one PostgreSQL schema, proxies that move agents between
them, what the database says each replica holds, and the build calls the tests make."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncpg
import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from tests.support.build_waits import all_steps_running, build_of
from tests.support.processes import (
    AgentProc,
    ServerProc,
    start_agent,
    start_server,
    step_pids,
)
from tests.support.tcp_proxy import TcpProxy

TERMINAL = {
    build_pb2.BUILD_STATUS_SUCCEEDED,
    build_pb2.BUILD_STATUS_FAILED,
    build_pb2.BUILD_STATUS_CANCELED,
}
Stub = build_control_pb2_grpc.BuildControlStub
SHARDS = 64


class FailoverProxy(TcpProxy):
    """Each new connection goes to the first of `upstream_ports` that accepts it: an
    agent whose replica died reconnects to the next one (what a load balancer with
    health checks does, without one's configuration)."""

    def __init__(self, upstream_ports: list[int]) -> None:
        super().__init__(upstream_ports[0])
        self._upstream_ports = upstream_ports

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        for port in self._upstream_ports:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                continue
            break
        else:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)


class SwitchingProxy(TcpProxy):
    """A proxy whose upstream the test moves: the agent behind it loses its stream and
    reconnects to the other replica (a load balancer that picked another one)."""

    def switch_to(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self.cut()


class PartitionProxy(TcpProxy):
    """A proxy between one replica and PostgreSQL that the test cuts the replica off
    with: while partitioned, every new connection is dropped at once (the replica's
    reconnects fail as over a broken network path)."""

    partitioned = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.partitioned:
            writer.transport.abort()
            return
        await super()._accept(reader, writer)


async def start_replica(tmp_path: Path, name: str, url: str, *extra: str) -> ServerProc:
    return await start_server(
        tmp_path / name, "--store", url, "--replicas", "on", "--default-grace", "2", *extra
    )


async def start_cut_off_pair(
    tmp_path: Path,
    database_port: int,
    url: str,
    proxy: PartitionProxy,
    started: list[ServerProc],
    *b_extra: str,
) -> tuple[ServerProc, ServerProc]:
    """Replica a reaching the database through `proxy` (started here, so the test can
    cut it off), b directly (with `b_extra`); once they hold half the shards each."""
    proxy_port = (await proxy.start()).rsplit(":", 1)[1]
    a = await start_replica(tmp_path, "a", url.replace(f":{database_port}/", f":{proxy_port}/"))
    started.append(a)
    b = await start_replica(tmp_path, "b", url, *b_extra)
    started.append(b)
    await until_shares(url, {a.target: SHARDS // 2, b.target: SHARDS // 2})
    return a, b


async def agent_on_each(tmp_path: Path, agents: list[AgentProc], *replicas: ServerProc) -> None:
    """An agent of 4 slots connected to each of `replicas` (agent-a, agent-b, …), once
    each replica lists its agent connected (before it, a replica's builds would go to
    the other's agent: the one connected)."""
    for replica, name in zip(replicas, "abcdefgh", strict=False):
        agents.append(await start_agent(replica.target, f"agent-{name}", tmp_path, "os=linux", 4))
    for replica, name in zip(replicas, "abcdefgh", strict=False):
        await until_connected(replica, f"agent-{name}")


async def until_connected(
    replica: ServerProc,
    agent_id: str,
    within: float = 30,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> None:
    """Wait for `replica` to list `agent_id` connected (another process's doing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with grpc.aio.insecure_channel(replica.target) as channel:
        stub = Stub(channel)
        while True:
            listed = await stub.ListAgents(
                build_control_pb2.ListAgentsRequest(), metadata=metadata, timeout=10
            )
            if any(x.agent_id == agent_id and x.connected for x in listed.agents):
                return
            if loop.time() > deadline:
                raise TimeoutError(f"{agent_id} not connected to {replica.target}")
            await asyncio.sleep(0.05)


class StartTwo(Protocol):
    """The `two_replicas` fixture: replicas a and b on `url`, each with `extra` flags."""

    async def __call__(self, url: str, *extra: str) -> tuple[ServerProc, ServerProc]: ...


async def start_two(
    tmp_path: Path, url: str, started: list[ServerProc], *extra: str
) -> tuple[ServerProc, ServerProc]:
    """Replicas a and b on `url` (appended to `started` as each starts, so the test's
    teardown stops them), once they hold half the shards each."""
    a = await start_replica(tmp_path, "a", url, *extra)
    started.append(a)
    b = await start_replica(tmp_path, "b", url, *extra)
    started.append(b)
    await until_shares(url, {a.target: SHARDS // 2, b.target: SHARDS // 2}, 60)
    return a, b


async def shares(url: str) -> dict[str, int]:
    """Live leases per replica address (what each replica owns now)."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT r.name, count(*) AS n FROM shard_leases l"
            " JOIN replicas r ON r.instance_id = l.owner"
            " WHERE l.expires_at > now() GROUP BY r.name"
        )
    finally:
        await connection.close()
    return {row["name"]: int(row["n"]) for row in rows}


async def until_shares(url: str, wanted: dict[str, int], within: float = 30) -> None:
    """Wait for the replicas to hold `wanted` (read from the database: no event of
    another process reaches the test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (found := await shares(url)) != wanted:
        if loop.time() > deadline:
            raise TimeoutError(f"shares {found}, wanted {wanted}")
        await asyncio.sleep(0.05)


async def submit(stub: Stub, count: int, command: str = "sleep 600") -> list[str]:
    return [
        (await stub.SubmitBuild(build_of(1, command, "replicas"))).build.build_id
        for _ in range(count)
    ]


def unrunnable() -> build_control_pb2.SubmitBuildRequest:
    """A build no agent can take (a label none has): it waits QUEUED on its owner."""
    request = build_of(1, "true", "replicas")
    request.stages[0].jobs[0].labels["os"] = "no-such-os"
    return request


async def get_build(stub: Stub, build_id: str) -> build_pb2.Build:
    reply = await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))
    build: build_pb2.Build = reply.build
    return build


async def job_ids(stub: Stub, build_ids: list[str]) -> list[str]:
    found = []
    for build_id in build_ids:
        build = (await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))).build
        found += [job.job_id for stage in build.stages for job in stage.jobs]
    return found


async def cancel_events(stub: Stub, build_id: str) -> list[build_control_pb2.CancelResponse]:
    request = build_control_pb2.CancelRequest(build_id=build_id, reason="from the other replica")
    return [event async for event in stub.Cancel(request, timeout=60)]


class Accepted:
    """The cancels accepted so far (their first stream message came), and an event
    once `wanted` of them were."""

    def __init__(self, wanted: int) -> None:
        self.builds: set[str] = set()
        self.enough = asyncio.Event()
        self._wanted = wanted

    def add(self, build_id: str) -> None:
        self.builds.add(build_id)
        if len(self.builds) >= self._wanted:
            self.enough.set()


async def cancel_somewhere(
    stubs: list[Stub], build_id: str, reason: str, accepted: Accepted | None = None
) -> None:
    """What a client behind a load balancer does: on UNAVAILABLE (a replica gone, or
    not the owner yet) try the next replica, until one takes the cancel and its stream
    ends (a build found finished by a retry was cancelled by an earlier try)."""
    deadline = time.monotonic() + 90
    turn = 0
    while True:
        request = build_control_pb2.CancelRequest(build_id=build_id, reason=reason)
        try:
            async for _ in stubs[turn % len(stubs)].Cancel(request, timeout=60):
                if accepted is not None:
                    accepted.add(build_id)
            return
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION and turn > 0:
                return
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        turn += 1
        await asyncio.sleep(0.05)  # a client's retry backoff


@asynccontextmanager
async def stubs(a: ServerProc, b: ServerProc) -> AsyncIterator[tuple[Stub, Stub]]:
    """A BuildControl stub of each replica."""
    async with (
        grpc.aio.insecure_channel(a.target) as channel_a,
        grpc.aio.insecure_channel(b.target) as channel_b,
    ):
        yield Stub(channel_a), Stub(channel_b)


@dataclass
class Running:
    """Builds submitted to each replica, every step running: their jobs, processes."""

    on_a: list[str]
    on_b: list[str]
    jobs: list[str]
    pids: set[int]

    @property
    def builds(self) -> list[str]:
        return self.on_a + self.on_b


async def running_on_both(stub_a: Stub, stub_b: Stub, count: int) -> Running:
    """`count` builds of one job sleeping for ever submitted to each replica."""
    on_a, on_b = await submit(stub_a, count), await submit(stub_b, count)
    await asyncio.gather(*(all_steps_running(stub_a, x) for x in on_a + on_b))
    jobs = await job_ids(stub_a, on_a + on_b)
    pids = {pid for job in jobs for pid in await step_pids(job)}
    return Running(on_a, on_b, jobs, pids)


def cancels_across(
    stub_a: Stub, stub_b: Stub, running: Running, reason: str, accepted: Accepted
) -> list[asyncio.Task[None]]:
    """Each build's cancel first to the replica that does not own it (the worst path),
    then wherever accepts it (cancel_somewhere)."""
    return [
        asyncio.create_task(cancel_somewhere([stub_b, stub_a], x, reason, accepted))
        for x in running.on_a
    ] + [
        asyncio.create_task(cancel_somewhere([stub_a, stub_b], x, reason, accepted))
        for x in running.on_b
    ]


async def cancel(stub: Stub, build_id: str, reason: str) -> None:
    request = build_control_pb2.CancelRequest(build_id=build_id, reason=reason)
    async for _ in stub.Cancel(request, timeout=60):
        pass


def jobs_started_per_agent(agents: list[AgentProc]) -> dict[str, set[str]]:
    started: dict[str, set[str]] = {}
    for agent in agents:
        for job_id in re.findall(r"job (\S+) \(build \S+\) started", agent.log.read_text()):
            started.setdefault(job_id, set()).add(agent.agent_id)
    return started


async def until_value(url: str, sql: str, wanted: object, within: float = 60) -> None:
    """Wait for the one value `sql` selects to be `wanted` (another process's work,
    seen only in the database)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (found := (await query(url, sql))[0][0]) != wanted:
        if loop.time() > deadline:
            raise TimeoutError(f"{sql!r} gave {found!r}, wanted {wanted!r}")
        await asyncio.sleep(0.05)


async def query(url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()
