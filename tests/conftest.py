"""Session-wide fixtures: one real PostgreSQL for every test that needs it.

`postgres` starts it on first use (about 1 s idle, up to 10 s on a loaded machine) and
stops it at the end of the session.
Without PostgreSQL installed the tests that need it skip with one line saying how to
get it; under CI (CI=true) that is a failure instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.postgres_server import (
    DATABASE,
    HOW_TO_GET,
    PostgresServer,
    fresh_database,
    start_server,
)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_server()
    if server is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {HOW_TO_GET}")
        pytest.skip(HOW_TO_GET)
    try:
        server.psql(f"CREATE DATABASE {DATABASE}")
        yield server
    finally:
        try:
            server.stop()
        finally:
            server.remove()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """An empty schema for one test; the store migrates it when it opens."""
    return fresh_database(postgres)


# Folders whose every test starts server and agent processes. A `pytestmark` in a
# conftest.py marks nothing (pytest reads it from test modules only), so the mark is
# given here: `pytest -m "not e2e"` leaves them out.
E2E_FOLDERS = frozenset({"e2e", "replicas"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FOLDERS & set(item.path.relative_to(item.config.rootpath).parts[:2]):
            item.add_marker(pytest.mark.e2e)
