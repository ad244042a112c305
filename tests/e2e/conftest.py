from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2_grpc

from tests.support.processes import AgentProc, ServerProc, start_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProc]:
    proc = await start_server(tmp_path / "data", "--default-grace", "5", "--reconnect-window", "10")
    try:
        yield proc
    finally:
        if proc.process.returncode is None:
            assert await proc.stop() == 0, "the server must exit 0 on SIGTERM"


@pytest.fixture
async def stub(server: ServerProc) -> AsyncIterator[build_control_pb2_grpc.BuildControlStub]:
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield build_control_pb2_grpc.BuildControlStub(channel)


@pytest.fixture
async def agents() -> AsyncIterator[list[AgentProc]]:
    started: list[AgentProc] = []
    try:
        yield started
    finally:
        for agent in started:
            await agent.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_flags(request: pytest.FixtureRequest) -> list[str]:
    """The serve flags of each backend: none for SQLite under --data-dir, --store for
    a PostgreSQL schema of the test's own."""
    if request.param == "sqlite":
        return []
    return ["--store", str(request.getfixturevalue("postgres_url"))]
