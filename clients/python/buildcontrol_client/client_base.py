"""What the async client (client.py) and the blocking one (sync_client.py) share, so a
feature of one is a feature of both: the same constructor arguments (target, timeout,
channel options, token, TLS), the receive limit, the call metadata, the channel's
credentials and their plaintext-token warning (credentials.py), the requests
(request_builders.py) and the typed errors (errors.py). Only the calls themselves,
awaited or blocking, differ."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from buildcontrol_proto.message_limits import with_receive_limit

from buildcontrol_client.auth import auth_metadata
from buildcontrol_client.credentials import TlsOptions

DEFAULT_TIMEOUT_SECONDS = 30.0


class ClientBase:
    """The settings of one client's channel and calls."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
        channel_options: Sequence[tuple[str, Any]] = (),
        token: str | None = None,
        tls: TlsOptions | None = None,
    ) -> None:
        """`timeout` bounds each unary call; streams run until they end or are closed.
        `token` is sent as `authorization: Bearer TOKEN` with every call; `tls` secures
        the channel (credentials.py)."""
        self.target = target
        self._timeout = timeout
        self._metadata = auth_metadata(token)
        self._tls = tls
        # Builds at the server's limits are larger than gRPC's default 4 MiB.
        self._channel_options = with_receive_limit(channel_options)

    @property
    def _unary(self) -> dict[str, Any]:
        """The keyword arguments of every unary call."""
        return {"timeout": self._timeout, "metadata": self._metadata}

    @property
    def _stream(self) -> dict[str, Any]:
        """The keyword arguments of every server stream (no deadline: they run long)."""
        return {"metadata": self._metadata}

    @property
    def _sends_token(self) -> bool:
        """Whether calls carry a token (then a plaintext channel off loopback warns)."""
        return bool(self._metadata)
