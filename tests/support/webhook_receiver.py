"""A webhook receiver for tests: a minimal HTTP/1.1 server on 127.0.0.1:0 (no web
framework) that records every request and answers with `status`, or never answers
when `status` is None (it accepts, reads the request, and hangs).

Tests wait on `arrived` (one entry per request) instead of sleeping; `hold`, when
set to an unset Event, parks each answer until the test sets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

REASONS = {200: "OK", 204: "No Content", 404: "Not Found", 429: "Too Many Requests"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, status: int | None) -> None:
        self.status = status
        self.hold: asyncio.Event | None = None
        self.requests: list[Request] = []
        self.arrived: asyncio.Queue[Request] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks/secret-token?key=also-secret"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def next_request(self, within: float = 5.0) -> Request:
        return await asyncio.wait_for(self.arrived.get(), within)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection: normal for keep-alive and timeouts
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.rstrip("\r\n").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = Request(method, path, headers, body)
        self.requests.append(request)
        self.arrived.put_nowait(request)
        if self.hold is not None:
            await self.hold.wait()
        status = self.status
        if status is None:
            # Hang: read until the client gives up and closes the connection.
            with contextlib.suppress(ConnectionError):
                await reader.read()
            return False
        reason = REASONS.get(status, "Status")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        return True


# The `receiver_factory` fixture: make(status) starts a Receiver; the fixture closes it.
MakeReceiver = Callable[[int | None], Awaitable[Receiver]]
