"""Every store test that is not about files runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from buildcontrol_server.store.sqlite import SqliteStore

BACKENDS = ["file", "memory"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_path(backend: str, tmp_path: Path) -> str:
    return str(tmp_path / "builds.sqlite") if backend == "file" else ":memory:"


@pytest.fixture
async def store(store_path: str) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(store_path)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def db_file(tmp_path: Path) -> str:
    return str(tmp_path / "builds.sqlite")
