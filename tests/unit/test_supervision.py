"""The supervised loop of an actor (actors/supervision.py), with a small actor whose
handler fails on demand: a failed turn is answered UNAVAILABLE and the actor goes on
after a restart; failures in a row wait longer and longer; a Shutdown ends a wait."""

from __future__ import annotations

import asyncio

import pytest
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.supervision import SupervisedActor
from buildcontrol_server.domain.errors import Unavailable

WAIT = 10.0


class FlakyActor(SupervisedActor):
    """Fails its next `failures` commands; its store reads fail while `store_down`."""

    def __init__(self, failures: int, store_down: bool = False) -> None:
        super().__init__("flaky")
        self.failures = failures
        self.store_down = store_down
        self.read_backs: list[int] = []  # the failure-in-a-row count of each reload
        self.retired = asyncio.Event()

    async def _handle(self, command: cmd.Command) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("injected bug")
        command.answer("handled")

    def _done(self) -> bool:
        return False

    async def _restart(self) -> bool:
        await self._read_back(self._load)
        return True

    async def _load(self) -> None:
        self.read_backs.append(self._failures_in_row)
        if self.store_down:
            raise OSError("store down")

    def _retire(self) -> None:
        self.retired.set()


async def test_a_failed_turn_is_answered_unavailable_and_the_next_command_is_handled() -> None:
    actor = FlakyActor(failures=1)
    actor._start_loop()
    first, second = cmd.Admit(), cmd.Admit()
    actor.tell(first)
    actor.tell(second)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(first.reply, WAIT)
    assert await asyncio.wait_for(second.reply, WAIT) == "handled"
    assert actor.read_backs == [1]
    await actor.ask(cmd.Shutdown())
    await asyncio.wait_for(actor.join(), WAIT)


async def test_failures_in_a_row_back_off_more_and_a_handled_command_resets_it() -> None:
    actor = FlakyActor(failures=3)
    actor._start_loop()
    commands = [cmd.Admit() for _ in range(4)]
    for command in commands:
        actor.tell(command)
    assert await asyncio.wait_for(commands[-1].reply, WAIT) == "handled"
    assert actor.read_backs == [1, 2, 3], "each failure in a row waits one step longer"
    actor.failures = 1
    again = cmd.Admit()
    actor.tell(again)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(again.reply, WAIT)
    after = cmd.Admit()
    assert await asyncio.wait_for(actor.ask(after), WAIT) == "handled"
    assert actor.read_backs == [1, 2, 3, 1], "a handled command starts the count again"
    await actor.ask(cmd.Shutdown())
    await asyncio.wait_for(actor.join(), WAIT)


async def test_a_shutdown_ends_the_wait_of_an_actor_whose_store_stays_down() -> None:
    actor = FlakyActor(failures=1, store_down=True)
    actor._start_loop()
    failing = cmd.Admit()
    actor.tell(failing)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(failing.reply, WAIT)
    assert actor.restarting
    shutdown = cmd.Shutdown()
    actor.tell(shutdown)
    await asyncio.wait_for(actor.join(), WAIT)
    assert actor.retired.is_set() and actor.closed
    assert shutdown.reply.done() and shutdown.reply.result() is None
