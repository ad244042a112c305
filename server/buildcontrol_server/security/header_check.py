"""Request headers that are not printable ASCII, refused before authentication.

gRPC allows only printable ASCII in the value of a header whose key does not end in
`-bin`. grpc's Python core decodes a value that is not UTF-8 as Latin-1 and logs an
ERROR with a traceback (and the raw bytes, which may be someone's token) each time:
anyone could fill the log without a token. So that log record is dropped, such
requests are refused (UNAUTHENTICATED for `authorization`, else INVALID_ARGUMENT),
and the log gets at most one WARNING a minute saying how many there were."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from buildcontrol_server import metrics

log = logging.getLogger("buildcontrol.audit.headers")

PROBLEM = "values must be printable ASCII (binary values go in a -bin header)"
WARNING_INTERVAL_SECONDS = 60.0
# The logger and the message of grpc's record for a value that is not UTF-8.
_GRPC_LOGGER = "grpc._cython.cygrpc"
_GRPC_MESSAGE = "Invalid encoding on"


class RateLimitedWarning:
    """One WARNING per interval, counting the occurrences in between."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._unreported = 0

    def occurred(self) -> None:
        self._unreported += 1
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return
        log.warning(
            "refused %d request(s) with header values that are not printable ASCII "
            "(at most one such line per %g s)",
            self._unreported,
            self._interval,
        )
        self._last, self._unreported = now, 0


_WARNING = RateLimitedWarning(WARNING_INTERVAL_SECONDS)


def _printable(value: str) -> bool:
    return value.isascii() and value.isprintable()


def non_ascii_header(metadata: Any) -> str | None:
    """The key of the first header whose value is not printable ASCII, or None.
    Counts it and (rate-limited) logs it; the value itself is never logged."""
    for key, value in metadata or ():
        if isinstance(value, str) and not key.endswith("-bin") and not _printable(value):
            metrics.UNDECODABLE_HEADERS.inc()
            _WARNING.occurred()
            return str(key)[:100]
    return None


class _DropGrpcEncodingErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_GRPC_MESSAGE)


_FILTER = _DropGrpcEncodingErrors()


def quiet_grpc_encoding_errors() -> None:
    """Drop grpc's per-request ERROR for such values (idempotent)."""
    grpc_log = logging.getLogger(_GRPC_LOGGER)
    if _FILTER not in grpc_log.filters:
        grpc_log.addFilter(_FILTER)
