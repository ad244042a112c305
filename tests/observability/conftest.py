"""Fixtures of the observability tests: a server whose /metrics a test scrapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.observability.observed_servers import Observed, observed_server


@pytest.fixture
async def observed(tmp_path: Path) -> AsyncIterator[Observed]:
    async with observed_server(tmp_path / "data") as server:
        yield server
