"""The data directory and the files in it hold jobs' environments and token hashes:
only the server's own user may read them, and nobody else may write the directory
(someone who can could swap the database or the tokens file under the server).

The server's process starts with umask 077, so whatever it creates is private; the
files an older version created with wider modes are narrowed at every start."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

PROCESS_UMASK = 0o077
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
# SQLite keeps these beside the database while it is open (WAL mode).
SQLITE_COMPANIONS = ("-wal", "-shm")


class UnsafeDataDir(Exception):
    """The data directory may be written by other users: the server does not start."""


def restrict_process_umask() -> None:
    """Files and directories the server creates from now on get no group or other bits."""
    os.umask(PROCESS_UMASK)


def prepare_directory(data_dir: Path) -> None:
    """Create `data_dir` 0700 if it is missing; raise UnsafeDataDir when group or
    others may write it (a 0777 or sticky /tmp-like directory included)."""
    data_dir.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    try:
        mode = data_dir.stat().st_mode
    except OSError:
        return  # not a directory we can see: the store names the problem
    if stat.S_ISDIR(mode) and mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeDataDir(
            f"data directory {data_dir} is writable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod go-w {data_dir}"
        )


def database_files(database: Path) -> list[Path]:
    return [database, *(database.with_name(database.name + tail) for tail in SQLITE_COMPANIONS)]


def narrow_files(paths: Iterable[Path]) -> None:
    """Make existing files 0600 (ones written by a version without the umask)."""
    for path in paths:
        try:
            if stat.S_IMODE(path.stat().st_mode) & ~FILE_MODE:
                path.chmod(FILE_MODE)
        except FileNotFoundError:
            continue
