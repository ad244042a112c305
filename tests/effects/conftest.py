"""Fixtures of the side-effects tests: webhook receivers and a store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from buildcontrol_server.store.sqlite import SqliteStore

from tests.support.webhook_receiver import MakeReceiver, Receiver


@pytest.fixture
async def receiver_factory() -> AsyncIterator[MakeReceiver]:
    started: list[Receiver] = []

    async def make(status: int | None) -> Receiver:
        receiver = await Receiver(status).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        await receiver.close()


@pytest.fixture
async def memory_store() -> AsyncIterator[SqliteStore]:
    async with SqliteStore(":memory:") as store:
        yield store
