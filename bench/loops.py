"""Which asyncio event loop a benchmark process runs: the default one, or uvloop."""

from __future__ import annotations

import asyncio

LOOPS = ("asyncio", "uvloop")


def install_loop(name: str) -> None:
    """Make `asyncio.run` use the loop `name` (call before it)."""
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif name != "asyncio":
        raise ValueError(f"loop must be one of {LOOPS}, not {name!r}")
