"""Fixtures of the replica tests: the replica and agent processes a test started,
stopped at its end, two replicas sharing the shards, and a PostgreSQL of the test's
own (helpers: replicas.py)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.replicas.replicas import StartTwo, start_two
from tests.support.postgres_server import PostgresServer
from tests.support.postgres_server import start_server as start_postgres
from tests.support.processes import AgentProc, ServerProc


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


@pytest.fixture
def two_replicas(tmp_path: Path, replicas: list[ServerProc]) -> StartTwo:
    """Starts replicas a and b on a database and returns once they hold half the
    shards each; they are stopped at the test's end."""

    async def start(url: str, *extra: str) -> tuple[ServerProc, ServerProc]:
        return await start_two(tmp_path, url, replicas, *extra)

    return start


@pytest.fixture
def own_postgres(postgres: PostgresServer) -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone, for a test that stops it: the session's
    server (`postgres`, whose fixture skips or fails when none is installed) runs the
    other tests' schemas."""
    server = start_postgres()
    assert server is not None, "initdb found for the session's server, not for this one"
    try:
        yield server
    finally:
        # Already stopped by a test that failed before starting it again: nothing to stop.
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        server.remove()
