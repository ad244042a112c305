"""Waiting for a step to signal, through a fifo, that it runs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

WAIT = 20.0


async def wait_until_ready(fifo: Path) -> None:
    """The main step writes a line to the fifo once it runs (an event, not a poll)."""
    loop = asyncio.get_running_loop()
    descriptor = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    readable: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(descriptor, wake)
    try:
        await asyncio.wait_for(readable, WAIT)
    finally:
        loop.remove_reader(descriptor)
        os.close(descriptor)
