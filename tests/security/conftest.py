"""Fixtures of the security tests: a server with authentication on, on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.secure_servers import (
    SecureServer,
    secure_server,
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SecureServer]:
    async with secure_server(tmp_path) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgresql"])
def token_backend(request: pytest.FixtureRequest) -> str | None:
    """Each backend: None for SQLite (a tokens file), else a PostgreSQL schema's URL."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def stored_server(tmp_path: Path, token_backend: str | None) -> AsyncIterator[SecureServer]:
    """`server` on every backend: its tokens in the tokens file (SQLite) or in the
    database (PostgreSQL)."""
    async with secure_server(tmp_path, store_url=token_backend) as running:
        yield running
