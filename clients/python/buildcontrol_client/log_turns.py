"""Turns of log work on the agent's event loop: one a loop pass, for all jobs together.

The agent's one event loop carries the stops (the Connect stream) and the logs (every
step's pipe, every job's UploadLogs) alike, and asyncio runs every callback that is
ready in a pass before it looks for the next: with 50 steps flooding output, a StopJob
that just arrived could wait behind 50 pipe reads and as many upload messages of that
pass. So a flood's reads and messages wait for a turn, and there is one turn a pass:
whatever else is ready (a StopJob, a result to write) runs between two of them.
Output that is not a flood (a small read, a line now and then) never waits for one."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable


class LogTurns:
    def __init__(self) -> None:
        self._waiting: collections.deque[Callable[[], None]] = collections.deque()
        # The loop a turn is scheduled on (None: none is); another loop's waiters are
        # dropped (that loop is gone: one loop at a time runs the agent).
        self._loop: asyncio.AbstractEventLoop | None = None

    def call_in_turn(self, callback: Callable[[], None]) -> None:
        """Run `callback` in a later loop pass of its own."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            self._waiting.clear()
            self._loop = None
        self._waiting.append(callback)
        self._schedule(loop)

    async def turn(self) -> None:
        """Until a later loop pass of its own."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def go() -> None:
            if not ready.done():  # cancelled while it waited
                ready.set_result(None)

        self.call_in_turn(go)
        await ready

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is None and self._waiting:
            self._loop = loop
            loop.call_soon(self._next)

    def _next(self) -> None:
        loop, self._loop = self._loop, None
        if self._waiting:
            self._waiting.popleft()()
        if loop is not None:
            self._schedule(loop)


# One per agent process: the turns are of the one event loop that runs the agent.
TURNS = LogTurns()
