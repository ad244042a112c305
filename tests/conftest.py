"""Session-wide fixtures: one real PostgreSQL for every test that needs it.

`postgres` starts it on first use (about 1 s idle, up to 10 s on a loaded machine) and
stops it at the end of the session.
Without PostgreSQL installed the tests that need it skip with one line saying how to
get it; under CI (CI=true) that is a failure instead, so CI never passes by skipping.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests.support.postgres_server import HOW_TO_GET, PostgresServer, start_server

DATABASE = "buildcontrol_tests"
_schemas = itertools.count()


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


def fresh_database(server: PostgresServer) -> str:
    """The URL of a new, empty schema of its own in the test database.

    A schema, not a database: CREATE DATABASE takes ~2 s on this loaded machine,
    CREATE SCHEMA milliseconds. The URL's search_path puts the store in it, and the
    one-server lock is per schema, so tests never see each other's builds or locks."""
    name = f"test_{next(_schemas)}"
    server.psql(f"CREATE SCHEMA {name}", DATABASE)
    return f"{server.url(DATABASE)}?search_path={name}"


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """An empty schema for one test; the store migrates it when it opens."""
    return fresh_database(postgres)
