"""Uploads, reads and follows of job logs: the checks, the store and the feed. Callers
name the one job their credential is limited to (a job token), or None."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from buildcontrol_server import metrics
from buildcontrol_server.domain.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Resource,
    ResourceExhausted,
)
from buildcontrol_server.logs.feed import LogFeed
from buildcontrol_server.logs.store import READ_PAGE_BYTES, LogSlice, LogStore

# Room past the job log limit for the agent's marker and stop lines.
MARKER_ROOM_BYTES = 4096
# A follower with nothing new looks at its job's status this often (a job whose agent
# died never sends its last byte; a replica's follower of an upload elsewhere learns
# of new bytes this way).
FOLLOW_RECHECK_SECONDS = 1.0
# How long a follower of a job that ended waits for the rest of its log (the agent
# sends a stopped job's last bytes after its result, within its FINISH_SECONDS).
FOLLOW_TAIL_SECONDS = 10.0

# (build id, job id) -> None if the job is not terminal, its status name if it is;
# NotFound for an unknown build or job.
JobState = Callable[[str, str], Awaitable[str | None]]
# (build id, job id) -> None while the job is not terminal, else whether it ever
# reached an agent (its log's last bytes may still come); NotFound as JobState.
TailExpected = Callable[[str, str], Awaitable[bool | None]]


@dataclass(frozen=True)
class Chunk:
    build_id: str
    job_id: str
    offset: int
    data: bytes
    final: bool


class JobLogs:
    def __init__(
        self, store: LogStore, job_state: JobState, limit_bytes: int, tail_expected: TailExpected
    ) -> None:
        self.store = store
        self.feed = LogFeed()
        self._job_state = job_state
        self._tail_expected = tail_expected
        self._cap = limit_bytes + MARKER_ROOM_BYTES

    async def _check(self, build_id: str, job_id: str, scope: tuple[str, str] | None) -> str | None:
        if not job_id:
            raise InvalidArgument("job_id", "is required")
        if scope is not None and scope != (build_id, job_id):
            raise PermissionDenied(f"a job token of {scope[1]} may only use its own job's log")
        return await self._job_state(build_id, job_id)

    async def upload(self, chunks: AsyncIterator[Chunk], scope: tuple[str, str] | None) -> int:
        """Store a stream of one job's chunks; the stored size at its end."""
        job: tuple[str, str] | None = None
        size = 0
        async for chunk in chunks:
            if job is None:
                await self._check(chunk.build_id, chunk.job_id, scope)
                job = (chunk.build_id, chunk.job_id)
            elif job != (chunk.build_id, chunk.job_id):
                raise InvalidArgument("job_id", "every message of a stream names one job")
            if chunk.offset + len(chunk.data) > self._cap:
                raise ResourceExhausted(
                    f"job log past its limit of {self._cap} bytes (--log-limit)"
                )
            size = await self.store.append(*job, chunk.offset, chunk.data, chunk.final)
            metrics.LOG_BYTES_RECEIVED.inc(len(chunk.data))
            self.feed.appended(*job)
        return size

    async def read(
        self, build_id: str, job_id: str, offset: int, limit: int, scope: tuple[str, str] | None
    ) -> LogSlice:
        if offset < 0:
            raise InvalidArgument("offset", "must not be negative")
        if not 0 <= limit <= READ_PAGE_BYTES:
            raise InvalidArgument("limit", f"must be 0 to {READ_PAGE_BYTES}")
        await self._check(build_id, job_id, scope)
        return await self.store.read(build_id, job_id, offset, limit or READ_PAGE_BYTES)

    async def follow(
        self, build_id: str, job_id: str, offset: int, scope: tuple[str, str] | None
    ) -> AsyncIterator[LogSlice]:
        """What is stored from `offset`, then new bytes as they come, until the log is
        complete and sent (or its job ended FOLLOW_TAIL_SECONDS ago)."""
        if offset < 0:
            raise InvalidArgument("from_offset", "must not be negative")
        await self._check(build_id, job_id, scope)
        loop = asyncio.get_running_loop()
        with self.feed.subscribed(build_id, job_id) as appended:
            ended_at: float | None = None  # when the job was seen terminal (monotonic)
            patience = 0.0
            while True:
                appended.clear()
                piece = await self.store.read(build_id, job_id, offset, READ_PAGE_BYTES)
                if piece.data:
                    offset = piece.offset + len(piece.data)
                    yield piece
                    continue
                if piece.complete:
                    return
                # A stopped job's last bytes come after its result: they are waited for
                # FOLLOW_TAIL_SECONDS (an agent that died never sends them); a job that
                # never reached an agent has none to wait for.
                if ended_at is None:
                    expected = await self._tail_expected(build_id, job_id)
                    if expected is not None:
                        ended_at = loop.time()
                        patience = FOLLOW_TAIL_SECONDS if expected else 0.0
                        continue  # one more read: bytes may have come meanwhile
                if ended_at is not None and loop.time() - ended_at >= patience:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FOLLOW_RECHECK_SECONDS):
                        await appended.wait()


def job_not_found(build_id: str, job_id: str) -> NotFound:
    return NotFound(f"build {build_id} has no job {job_id}", resource=Resource("Job", job_id))
