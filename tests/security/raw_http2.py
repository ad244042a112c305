"""A gRPC request sent frame by frame over HTTP/2 (h2), for what grpc's own client
refuses to send: header values that are not valid UTF-8 (or not even ASCII)."""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events

WAIT = 10.0


async def unary_call(
    port: int, method: str, extra_headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> dict[bytes, bytes]:
    """Send one gRPC request (an empty message unless `body`) to 127.0.0.1:`port` and
    return the response's headers and trailers merged (grpc-status, grpc-message)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    connection.initiate_connection()
    stream = connection.get_next_available_stream_id()
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", method.encode()),
        (b":authority", f"127.0.0.1:{port}".encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        *extra_headers,
    ]
    connection.send_headers(stream, headers)
    frame = b"\x00" + len(body).to_bytes(4, "big") + body
    connection.send_data(stream, frame, end_stream=True)
    writer.write(connection.data_to_send())
    answer: dict[bytes, bytes] = {}
    try:
        async with asyncio.timeout(WAIT):
            while True:
                data = await reader.read(65536)
                if not data:
                    return answer
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                        answer.update(dict(event.headers))
                    if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                        return answer
                writer.write(connection.data_to_send())
    finally:
        writer.close()
        await writer.wait_closed()
