"""Ports for tests that need to know the address before the server starts."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port free now, for a server that must come back on the same address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
