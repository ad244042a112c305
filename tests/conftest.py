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
from tests.support.processes import SERVER_LOGS, logged_violations


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


@pytest.fixture(autouse=True)
def audited_servers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every server process a test started must end with no invariant violation in
    its log (the auditor runs every second there). A test that breaks an invariant on
    purpose says so with `@pytest.mark.breaks_invariants`."""
    SERVER_LOGS.clear()
    yield
    logs, found = list(SERVER_LOGS), []
    SERVER_LOGS.clear()
    if request.node.get_closest_marker("breaks_invariants") is None:
        found = [f"{log}: {line}" for log in logs for line in logged_violations(log)]
    assert not found, "invariants violated:\n" + "\n".join(found)
