"""One store per database file: an exclusive `flock` on `<db>.lock`.

SQLite's own locking lets two processes share a file, but two buildcontrol servers on
one database would each believe their actors own the live builds and would push
contradictory stops to agents. The lock turns that into an error at start-up.

`flock` (not `fcntl` record locks) because its lock belongs to the open file
description: a second open in the same process conflicts too, and the kernel drops
the lock when the process dies, so a crashed server never leaves a stale lock. The
lock file is never deleted: unlinking a flock file lets a third process lock a new
inode while a second still holds the old one.
"""

from __future__ import annotations

import fcntl
import os

from buildcontrol_server.store.errors import StoreOpenError


class FileLock:
    def __init__(self, database_path: str) -> None:
        self.database_path = database_path
        self.path = os.path.realpath(database_path) + ".lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting, or raise StoreOpenError naming the holder."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise StoreOpenError(
                self.database_path, f"cannot create lock file {self.path}: {error.strerror}"
            ) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreOpenError(
                self.database_path,
                f"already open by another buildcontrol store ({holder}, lock {self.path})",
            ) from error
        except OSError:
            os.close(fd)
            raise
        # The holder's pid is only for the message a second server prints.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Closing the descriptor drops the flock; no explicit LOCK_UN needed.
        os.close(fd)


def _read_holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"pid {text}" if text.isdigit() else "holder unknown"
