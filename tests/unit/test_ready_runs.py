"""ready_runs: a stream's items in runs of what was ready, in order, errors in place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from buildcontrol_server.rpc.ready_batches import ready_runs


async def _runs(source: AsyncIterator[int], limit: int = 100) -> list[list[int]]:
    return [run async for run in ready_runs(source, limit)]


async def test_items_ready_together_make_one_run_and_a_wait_ends_it() -> None:
    gate = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        for item in range(5):
            yield item
        await gate.wait()
        yield 5

    runs = ready_runs(source(), 100)
    assert await anext(runs) == [0, 1, 2, 3, 4]
    gate.set()
    assert await anext(runs) == [5]
    with pytest.raises(StopAsyncIteration):
        await anext(runs)


async def test_a_run_holds_at_most_limit_items_in_order() -> None:
    async def source() -> AsyncIterator[int]:
        for item in range(7):
            yield item

    assert await _runs(source(), limit=3) == [[0, 1, 2], [3, 4, 5], [6]]


async def test_an_error_comes_after_the_items_before_it() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise LookupError("gone")

    runs = ready_runs(source(), 100)
    assert await anext(runs) == [1, 2]
    with pytest.raises(LookupError, match="gone"):
        await anext(runs)


async def test_a_reader_that_leaves_closes_the_source() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.Event().wait()  # never set: only the close ends it
        finally:
            closed.set()

    runs = ready_runs(source(), 100)
    assert await anext(runs) == [1]
    await runs.aclose()  # type: ignore[attr-defined]
    assert closed.is_set()
