"""When the agent stops trying to connect: the server refused it for good."""

from __future__ import annotations

import time

import grpc

from buildcontrol_client.agent_stream import describe_error

# Statuses that no reconnect can cure: the agent stops instead of retrying forever.
REFUSALS = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


class AgentRefused(Exception):
    """The server refused this agent's credentials or id ("CODE: message")."""


class Refusals:
    """Tells a refusal from a stream that merely ended. A wrong or revoked token, or
    an id the token may not use, is final at once. An id whose stream from another
    agent process is live (ALREADY_EXISTS) is final only after `id_taken_patience`
    seconds of refusals in a row: a predecessor killed a moment ago may not be
    noticed by the server yet."""

    def __init__(self, id_taken_patience: float) -> None:
        self._patience = id_taken_patience
        self._id_taken_since: float | None = None  # monotonic, first refusal in a row

    def connected(self) -> None:
        self._id_taken_since = None

    def check(self, error: BaseException) -> None:
        """Raise AgentRefused if `error` means retrying cannot help."""
        if not isinstance(error, grpc.aio.AioRpcError):
            return
        if error.code() in REFUSALS:
            raise AgentRefused(describe_error(error)) from error
        if error.code() is not grpc.StatusCode.ALREADY_EXISTS:
            self._id_taken_since = None
            return
        now = time.monotonic()
        if self._id_taken_since is None:
            self._id_taken_since = now
        if now - self._id_taken_since >= self._patience:
            raise AgentRefused(describe_error(error)) from error
