"""How large a message the clients accept from the server, and the server sends.

gRPC's default receive limit (4 MiB) is below a build at the server's default limits
(1,000 jobs, 10,000 steps, 4 MiB of request: about 8-10 MiB as a Build, since a step's
name defaults to its command). The Python clients and the CLI accept up to
MAX_RESPONSE_BYTES, and the server sends at most that, so both ends agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_RECEIVE_OPTION = "grpc.max_receive_message_length"


def with_receive_limit(options: Sequence[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """`options` with the receive limit raised to MAX_RESPONSE_BYTES, unless the caller
    set one of their own."""
    if any(name == _RECEIVE_OPTION for name, _ in options):
        return tuple(options)
    return (*options, (_RECEIVE_OPTION, MAX_RESPONSE_BYTES))
