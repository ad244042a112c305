"""Checks on a database file before anything writes to it: a file we refuse (not
SQLite, another program's, written by a newer server, in an unusable directory) must
stay byte-for-byte as it was, and the message must say what is wrong with it."""

from __future__ import annotations

import os
from pathlib import Path

import aiosqlite

from buildcontrol_server.store import schema
from buildcontrol_server.store.errors import StoreOpenError

SQLITE_HEADER = b"SQLite format 3\x00"


def check_directory(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise StoreOpenError(path, "is a directory, not a database file")
    if not os.path.isdir(directory):
        raise StoreOpenError(path, f"directory {directory} does not exist")
    # SQLite creates <db>-wal and <db>-shm beside the file, so even an existing
    # database needs a writable directory.
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreOpenError(path, f"directory {directory} is not writable")
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise StoreOpenError(path, "the file is not readable and writable by this user")


def has_content(path: str) -> bool:
    """True for an existing SQLite file with data; refuse anything that is not one."""
    try:
        with open(path, "rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return False  # a new database
    except OSError as error:
        raise StoreOpenError(path, f"cannot read: {error.strerror}") from error
    if header and header != SQLITE_HEADER:
        # An empty file is fine (SQLite initializes it); anything else is not ours.
        raise StoreOpenError(path, "is not a SQLite database; left untouched")
    return bool(header)


def read_only_uri(path: str) -> str:
    return Path(path).absolute().as_uri() + "?mode=ro"


async def check_schema_read_only(path: str, uri: str) -> None:
    connection = await aiosqlite.connect(uri, uri=True)
    try:
        version = await schema.read_version(connection)
        application_id = await schema.read_application_id(connection)
        tables = await schema.count_tables(connection)
    finally:
        await connection.close()
    if version > schema.LATEST_VERSION:
        too_new = schema.SchemaTooNew(version)
        raise StoreOpenError(path, f"{too_new}; upgrade buildcontrol (the file was not changed)")
    if version > 0 and application_id != schema.APPLICATION_ID:
        raise StoreOpenError(
            path, f"is a SQLite database of another application (application_id {application_id})"
        )
    if version == 0 and tables:
        raise StoreOpenError(
            path, f"has {tables} tables but no buildcontrol schema; left untouched"
        )
