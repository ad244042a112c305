"""The log store interface: one byte log per job, appended at known offsets.

Two backends: files under the data directory (files.py, beside SQLite) and a table in
the database (postgres.py). Both keep bytes as they came (not necessarily UTF-8) and
take the same offset rule (offsets.py), so a resent chunk is never stored twice."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

# Most bytes one read returns (GetJobLog's page, FollowJobLog's message).
READ_PAGE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LogSlice:
    data: bytes
    # Offset of data[0].
    offset: int
    # Bytes stored for the job so far.
    size: int
    # The agent sent the last byte (the job ended).
    complete: bool


class LogStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(
        self, build_id: str, job_id: str, offset: int, data: bytes, final: bool
    ) -> int:
        """Store the bytes of `data` past what is stored (offsets.py); the new size.
        FailedPrecondition for a chunk that leaves a gap or extends a complete log."""
        ...

    async def read(self, build_id: str, job_id: str, offset: int, limit: int) -> LogSlice:
        """Up to `limit` bytes from `offset` (none past the end; an unknown job's log
        is empty)."""
        ...

    async def delete_logs(self, build_ids: Collection[str]) -> int:
        """Delete every log of these builds (their builds were deleted); how many jobs'
        logs went."""
        ...

    async def delete_older_than(self, cutoff: float) -> int:
        """Delete the logs of builds whose last log write is before `cutoff` (wall
        clock seconds): the retention. How many jobs' logs went."""
        ...
