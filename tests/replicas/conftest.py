"""Fixtures of the replica tests: the replica and agent processes a test started,
stopped at its end (helpers: replicas.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

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
