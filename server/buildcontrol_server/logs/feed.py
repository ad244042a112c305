"""Wakes the followers of a job's log when bytes are appended (in this process; a
follower on another replica finds new bytes on its next look, at most
`FollowJobLog`'s recheck interval later)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class LogFeed:
    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], set[asyncio.Event]] = {}

    def appended(self, build_id: str, job_id: str) -> None:
        for event in self._waiting.get((build_id, job_id), ()):
            event.set()

    @contextmanager
    def subscribed(self, build_id: str, job_id: str) -> Iterator[asyncio.Event]:
        """An event set on every append to the job's log while the block runs. Clear
        it before reading, so an append between the read and the wait is not missed."""
        key = (build_id, job_id)
        event = asyncio.Event()
        self._waiting.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._waiting[key]
            waiting.discard(event)
            if not waiting:
                del self._waiting[key]
