"""Logs as files under the data directory (the SQLite backend's log store):
DATA_DIR/logs/BUILD_ID/JOB_ID.log, and JOB_ID.complete once the agent sent the last
byte. A file per job appends in O(1), is read with one seek, and a build's logs go
with one directory removal. Writes are plain file writes (page cache, no fsync): a
log is not part of the cancel's promise, and losing its last bytes on power loss is
the price of not syncing on every chunk."""

from __future__ import annotations

import re
import shutil
from collections.abc import Collection
from pathlib import Path

from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.logs.offsets import new_bytes
from buildcontrol_server.logs.store import LogSlice

# Ids are made by the server; anything else could climb out of the directory.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def _checked(field: str, value: str) -> str:
    if not _ID.fullmatch(value):
        raise InvalidArgument(field, "is not an id of this server")
    return value


class FileLogStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def open(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    def _paths(self, build_id: str, job_id: str) -> tuple[Path, Path]:
        directory = self.root / _checked("build_id", build_id)
        name = _checked("job_id", job_id)
        return directory / f"{name}.log", directory / f"{name}.complete"

    async def append(
        self, build_id: str, job_id: str, offset: int, data: bytes, final: bool
    ) -> int:
        log_path, complete_path = self._paths(build_id, job_id)
        stored = log_path.stat().st_size if log_path.exists() else 0
        fresh = new_bytes(stored, complete_path.exists(), offset, data)
        if fresh or not log_path.exists():
            log_path.parent.mkdir(mode=0o700, exist_ok=True)
            with log_path.open("ab") as file:
                file.write(fresh)
        if final:
            complete_path.touch()
        return stored + len(fresh)

    async def read(self, build_id: str, job_id: str, offset: int, limit: int) -> LogSlice:
        log_path, complete_path = self._paths(build_id, job_id)
        try:
            with log_path.open("rb") as file:
                size = file.seek(0, 2)
                file.seek(min(offset, size))
                data = file.read(limit)
        except FileNotFoundError:
            size, data = 0, b""
        return LogSlice(data, min(offset, size), size, complete_path.exists())

    async def delete_logs(self, build_ids: Collection[str]) -> int:
        deleted = 0
        for build_id in build_ids:
            directory = self.root / _checked("build_id", build_id)
            if directory.is_dir():
                deleted += len(list(directory.glob("*.log")))
                shutil.rmtree(directory, ignore_errors=True)
        return deleted

    async def delete_older_than(self, cutoff: float) -> int:
        if not self.root.is_dir():
            return 0
        old = []
        for directory in self.root.iterdir():
            if not directory.is_dir():
                continue
            newest = max((p.stat().st_mtime for p in directory.iterdir()), default=0.0)
            if newest < cutoff:
                old.append(directory.name)
        return await self.delete_logs(old)
