"""The agent's turns of log work (log_turns.py): one a loop pass for every job
together, so whatever else is ready in a pass (a StopJob) waits behind one of them at
most, not behind every flooding pipe."""

from __future__ import annotations

import asyncio

import pytest
from buildcontrol_client.log_turns import LogTurns


async def test_turns_run_one_a_loop_pass() -> None:
    turns = LogTurns()
    ran: list[int] = []
    for n in range(3):
        turns.call_in_turn(lambda n=n: ran.append(n))
    seen = []
    for _ in range(4):
        await asyncio.sleep(0)  # one loop pass
        seen.append(len(ran))
    assert seen == [1, 2, 3, 3]
    assert ran == [0, 1, 2]


async def test_what_else_is_ready_waits_behind_one_turn_at_most() -> None:
    turns = LogTurns()
    order: list[str] = []
    for n in range(50):  # fifty flooding pipes ready at once
        turns.call_in_turn(lambda n=n: order.append(f"read {n}"))
    asyncio.get_running_loop().call_soon(order.append, "stop")  # a StopJob, just read
    await asyncio.wait_for(turns.turn(), 10.0)  # after the fifty reads
    assert len(order) == 51
    assert order.index("stop") <= 1


async def test_a_cancelled_turn_gives_the_next_waiter_its_turn() -> None:
    turns = LogTurns()
    cancelled = asyncio.ensure_future(turns.turn())
    waiting = asyncio.ensure_future(turns.turn())
    await asyncio.sleep(0)  # both wait for their turn
    cancelled.cancel()
    await asyncio.wait_for(waiting, 10.0)
    with pytest.raises(asyncio.CancelledError):
        await cancelled


def test_waiters_of_a_loop_that_is_gone_do_not_hold_a_new_one() -> None:
    turns = LogTurns()
    ran: list[str] = []
    old = asyncio.new_event_loop()

    def wait_then_stop() -> None:
        turns.call_in_turn(lambda: ran.append("old loop"))
        old.stop()  # the loop ends before the turn comes

    old.call_soon(wait_then_stop)
    old.run_forever()
    old.close()

    async def in_a_new_loop() -> None:
        await asyncio.wait_for(turns.turn(), 10.0)
        ran.append("new loop")

    asyncio.run(in_a_new_loop())
    assert ran == ["new loop"]
