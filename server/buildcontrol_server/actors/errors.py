"""The errors of the actors' own making, and how a failed store write reaches a caller."""

from __future__ import annotations

import logging

from buildcontrol_server.domain.errors import DomainError, Unavailable

log = logging.getLogger(__name__)


class ActorRetired(Exception):
    """The build became terminal and its actor is gone: read it from the store."""


def write_failure(error: Exception, what: str) -> DomainError:
    """What a caller gets when a store write failed: a domain error the store raised
    as such (a compare-and-set conflict, a closed store) passes as it is; anything
    else (SQLite refusing, a full disk, I/O errors) is UNAVAILABLE, so every method
    answers a failed write the same retryable way. The cause goes to the log."""
    if isinstance(error, DomainError):
        return error
    log.error("%s: the store write failed", what, exc_info=error)
    return Unavailable("the store could not save the change; try again")
