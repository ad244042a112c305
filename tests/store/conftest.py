"""Every store test that is not about files runs once per backend: SQLite in a file,
SQLite in memory, and PostgreSQL (a database of its own per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from buildcontrol_server.store.base import BuildStore

from tests.store.backends import make_store

BACKENDS = ["file", "memory", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_path(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where the store lives: a file, ":memory:", or a postgresql:// URL."""
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "builds.sqlite") if backend == "file" else ":memory:"


@pytest.fixture
async def store(store_path: str) -> AsyncIterator[BuildStore]:
    opened = make_store(store_path)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def db_file(tmp_path: Path) -> str:
    return str(tmp_path / "builds.sqlite")
