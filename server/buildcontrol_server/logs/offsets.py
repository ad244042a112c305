"""The one rule both log backends apply to an uploaded chunk (pure)."""

from __future__ import annotations

from buildcontrol_server.domain.errors import FailedPrecondition, InvalidArgument


def new_bytes(stored: int, complete: bool, offset: int, data: bytes) -> bytes:
    """The part of `data` (at `offset`) not stored yet, given `stored` bytes so far.
    Bytes before `stored` were sent before (a resend after a reconnect): skipped, so
    nothing is doubled. A chunk starting past `stored` would leave a hole: refused, and
    the agent resends from the size the refusal names."""
    if offset < 0:
        raise InvalidArgument("offset", "must not be negative")
    if offset > stored:
        raise FailedPrecondition(f"offset {offset} is past the stored size {stored}")
    fresh = data[stored - offset :]
    if fresh and complete:
        raise FailedPrecondition(f"the log is complete at {stored} bytes")
    return fresh
