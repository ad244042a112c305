"""Replicas as users run them: `buildcontrol serve --replicas on` processes on one
PostgreSQL schema, agents that reach them through a proxy that fails over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.processes import AgentProc, ServerProc, start_server
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e


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


async def start_replica(tmp_path: Path, name: str, url: str, *extra: str) -> ServerProc:
    return await start_server(
        tmp_path / name, "--store", url, "--replicas", "on", "--default-grace", "2", *extra
    )


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


@pytest.fixture
async def replicas() -> AsyncIterator[list[ServerProc]]:
    started: list[ServerProc] = []
    try:
        yield started
    finally:
        for server in started:
            if server.process.returncode is None:
                server.process.kill()
                await server.process.wait()


@pytest.fixture
async def agents() -> AsyncIterator[list[AgentProc]]:
    started: list[AgentProc] = []
    try:
        yield started
    finally:
        for agent in started:
            await agent.stop()
