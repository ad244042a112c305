"""google.protobuf.Duration values from callers, checked before they become seconds.

The protobuf runtime accepts any (seconds, nanos) pair and folds it into one number:
nanos of 10^9 or more, or nanos of the other sign than seconds, would pass as a
different duration than the one written. The well-known type's own rules are applied
here instead, naming the field that broke them."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from buildcontrol_server.domain.errors import InvalidArgument

NANOS_PER_SECOND = 1_000_000_000
# The range google/protobuf/duration.proto allows: about ±10,000 years.
MAX_SECONDS = 315_576_000_000


def seconds_of(value: Duration, field: str, *, positive: bool = False) -> float:
    """`value` in seconds; InvalidArgument naming `field` for a malformed duration, a
    negative one, or (with `positive`) zero."""
    if not -NANOS_PER_SECOND < value.nanos < NANOS_PER_SECOND:
        raise InvalidArgument(field, f"nanos must be within ±999,999,999 (got {value.nanos})")
    if (value.seconds > 0 and value.nanos < 0) or (value.seconds < 0 and value.nanos > 0):
        raise InvalidArgument(field, "seconds and nanos must have the same sign")
    if abs(value.seconds) > MAX_SECONDS:
        raise InvalidArgument(field, f"seconds must be within ±{MAX_SECONDS}")
    total = value.seconds + value.nanos / NANOS_PER_SECOND
    if total < 0:
        raise InvalidArgument(field, "must not be negative")
    if positive and total == 0:
        raise InvalidArgument(field, "must be positive")
    return total
