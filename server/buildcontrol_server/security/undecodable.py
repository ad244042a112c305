"""Requests that are not valid protobuf. grpc.aio answers a request its deserializer
cannot parse with UNKNOWN ("Unexpected DecodeError"), and on a stream the error
surfaces inside the handler as an unexpected exception (INTERNAL, a traceback in the
log per message: a cheap way to flood it). Instead the deserializer hands over a
marker, and the call ends with INVALID_ARGUMENT naming the message type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.message import DecodeError

from buildcontrol_server.domain.errors import InvalidArgument


class Undecodable:
    """Stands in for a request that did not parse."""

    def __init__(self, type_name: str, error: DecodeError) -> None:
        self.problem = f"not a valid {type_name} message ({error})"[:300]


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer`, returning Undecodable instead of raising DecodeError."""
    if deserializer is None:
        return None
    message_type = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    type_name = getattr(descriptor, "full_name", "request")

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as error:
            return Undecodable(type_name, error)

    return parse


def check(request: Any) -> None:
    if isinstance(request, Undecodable):
        raise InvalidArgument("request", request.problem)


async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The requests of a stream; raises InvalidArgument at the first undecodable one
    (the servicer maps it like any other bad input)."""
    async for request in requests:
        check(request)
        yield request
