"""Errors the store raises. Opening failures stop the server with a one-line message
naming the file; write failures go to the one caller whose change set failed."""

from __future__ import annotations

from buildcontrol_server.domain.errors import Unavailable


class StoreOpenError(Exception):
    """The database cannot be opened as it is; the message names the file and why.

    Raised before anything was written to the database file when the problem is the
    file itself (not SQLite, a newer schema, locked by another store)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"database {path}: {problem}")
        self.path = path
        self.problem = problem


class StoreWriteError(Exception):
    """SQLite refused a change set (a constraint, a full disk, …). Only the change set
    that caused it is affected, unless SQLite aborted the whole transaction."""


class StoreClosedError(Unavailable):
    """A write arrived after `close()` began: the server is shutting down."""

    def __init__(self) -> None:
        super().__init__("the build store is closed (server shutting down)")


class StoreUnavailable(Unavailable):
    """The database cannot be reached (PostgreSQL restarted, network cut): nothing of
    the change set was written; the caller may retry once the store is back."""
