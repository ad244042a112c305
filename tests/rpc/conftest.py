from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.servers import Running, running_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_server(tmp_path / "data") as running:
        yield running


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Each backend: None for SQLite under the data dir, else a PostgreSQL schema."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def stored_server(tmp_path: Path, store_url: str | None) -> AsyncIterator[Running]:
    """`server` on every backend, for the tests of what the store does under the RPCs
    (group commit counts, compare-and-set conflicts, recovery)."""
    async with running_server(tmp_path / "data", store_url=store_url) as running:
        yield running
