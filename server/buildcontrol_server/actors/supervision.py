"""The inbox and the supervised loop of an actor.

An actor handles one command at a time from its inbox. If its loop raises (a bug, or
a state it can no longer trust), the error is logged with its traceback and counted,
the commands of the failed turn are answered UNAVAILABLE (retryable), and the actor
restarts from the store: after a backoff that grows with every failure in a row (a
bounded restart loop, not a hot one), it reloads its entity and goes on with the
commands still in its inbox. Nothing is lost with the loop but the failed turn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.errors import ActorRetired
from buildcontrol_server.domain.errors import Unavailable
from buildcontrol_server.effects.backoff import capped_exponential

log = logging.getLogger(__name__)
T = TypeVar("T")

# Most agent reports one actor applies in one commit.
REPORT_BATCH = 256
# The n-th loop failure in a row waits RESTART_BASE * 2**(n-1) seconds, at most
# RESTART_CAP, before the actor reloads (and again after every failed reload).
RESTART_BASE = 0.05
RESTART_CAP = 10.0


class StateLost(Exception):
    """A commit failed and the entity could not be read back: the actor's copy may be
    ahead of the store, and only a restart from the store makes it right again."""


class ShutdownDuringRestart(Exception):
    """A Shutdown arrived while the actor waited to restart: it stops instead."""


class SupervisedActor:
    """The loop; subclasses say how to handle commands and how to restart."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._inbox: deque[cmd.Command] = deque()
        self._mail = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        # The commands of the turn under way (answered with an error if the loop fails).
        self._in_hand: list[cmd.Command] = []
        self._failures_in_row = 0  # loop failures without a command handled between
        self.restarting = False  # waiting to restart from the store

    # ---- what subclasses provide ----

    async def _handle(self, command: cmd.Command) -> None:
        raise NotImplementedError

    async def _handle_reports(self, batch: list[cmd.Report]) -> None:
        raise NotImplementedError

    def _done(self) -> bool:
        """True when the actor has nothing more to do (its entity is terminal)."""
        raise NotImplementedError

    async def _restart(self) -> bool:
        """Reload from the store (with `_read_back`) and re-arm; False: stop."""
        raise NotImplementedError

    def _retire(self) -> None:
        """The loop ended for good: let go of timers, listeners, the registry."""
        raise NotImplementedError

    # ---- the inbox ----

    @property
    def closed(self) -> bool:
        return self._closed

    def tell(self, command: cmd.Command) -> None:
        if self._closed:
            command.fail(ActorRetired(self.name))  # a CancelInBatch gives its seat up
            return
        self._inbox.append(command)
        self._mail.set()

    async def ask(self, command: cmd.Command) -> Any:
        self.tell(command)
        return await command.reply

    def depth(self) -> int:
        return len(self._inbox)

    @property
    def idle(self) -> bool:
        """No turn under way, none queued, not restarting: what the actor holds is
        what its last turn left, so a synchronous read now is as good as one made in
        a turn of its own."""
        return not (self._inbox or self._in_hand or self.restarting or self._closed)

    async def join(self) -> None:
        if self._task is not None:
            await self._task

    def _start_loop(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"actor-{self.name}")

    # ---- the loop ----

    async def _run(self) -> None:
        try:
            while not await self._serve():
                if not await self._restart():
                    return
        except ShutdownDuringRestart:
            log.info("actor %s: shut down while waiting to restart", self.name)
        finally:
            self._closed = True
            while self._inbox:  # only when the actor could not be restarted
                left = self._inbox.popleft()
                if isinstance(left, cmd.Shutdown):
                    left.answer(None)
                left.fail(ActorRetired(self.name))
            self._retire()

    async def _serve(self) -> bool:
        """Handle commands until done or a Shutdown comes: True. False if the loop
        raised (logged, counted): the caller restarts the actor."""
        try:
            await self._loop()
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("actor %s: its loop failed; restarting it from the store", self.name)
            metrics.ACTOR_RESTARTS.inc()
            for command in self._in_hand:
                command.fail(Unavailable(f"the actor of {self.name} failed; try again"))
            self._in_hand = []
            return False

    async def _loop(self) -> None:
        while True:
            if not self._inbox:
                self._mail.clear()
                await self._mail.wait()
                continue
            command = self._inbox.popleft()
            if isinstance(command, cmd.Shutdown):
                command.answer(None)
                return
            if isinstance(command, cmd.Report):
                reports = self._take_reports(command)
                self._in_hand = list(reports)
                await self._handle_reports(reports)
            else:
                self._in_hand = [command]
                await self._handle(command)
            self._in_hand = []
            self._failures_in_row = 0
            if self._done() and not self._inbox:
                return

    def _take_reports(self, first: cmd.Report) -> list[cmd.Report]:
        """`first` and the reports queued right behind it: one commit for all of them
        (many agents confirming stops at once cost one transaction, not one each)."""
        batch = [first]
        while self._inbox and isinstance(self._inbox[0], cmd.Report) and len(batch) < REPORT_BATCH:
            report = self._inbox.popleft()
            assert isinstance(report, cmd.Report)
            batch.append(report)
        return batch

    async def _read_back(self, load: Callable[[], Awaitable[T]]) -> T:
        """`load()` after the backoff this failure in a row has earned; a failed load
        earns a longer one and is tried again."""
        self.restarting = True
        try:
            while True:
                self._failures_in_row += 1
                await self._pause(
                    capped_exponential(self._failures_in_row, RESTART_BASE, RESTART_CAP)
                )
                try:
                    return await load()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("actor %s: restart: the store read failed: %s", self.name, error)
        finally:
            self.restarting = False

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds` before a restart attempt, unless a Shutdown arrives first
        (the store may be closing: the actor stops instead of waiting on it)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while True:
            if any(isinstance(c, cmd.Shutdown) for c in self._inbox):
                raise ShutdownDuringRestart()
            left = until - loop.time()
            if left <= 0:
                return
            self._mail.clear()  # the loop is not running: nobody else waits on it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._mail.wait(), left)
