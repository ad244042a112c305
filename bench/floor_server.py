"""The floor's server: what grpc.aio, SQLite and PostgreSQL give on this machine at
this moment, with none of buildcontrol's code in the way. One process, like the real
server, holding:

- a bare grpc.aio server (the real server's channel options) with the standard health
  service, SERVING: its Check is the unary round trip the client measures;
- a bare AgentService.Connect that answers Hello with Welcome and keeps the stream: on
  request it writes StopJob messages, one at a time, each on a random one of the open
  streams (an outbox and a writer task per stream, as the real servicer has), and
  waits for the agent's JobStopped before the next. The time just before the write
  is kept; the agent (a load agent of fleet.py) keeps the time the message arrived;
- a bare SQLite commit (aiosqlite, WAL, synchronous=NORMAL, as the store), a bare
  PostgreSQL commit and a bare NOTIFY → LISTEN (asyncpg) when given a URL.

Driven over stdin/stdout with one JSON request per line, as fleet.py:
  push        count → {"sent": {job_id: monotonic seconds just before the write}}
  sqlite      count → {"samples": [seconds per commit]}
  pg_commit   url, count → {"samples": [...]}
  pg_notify   url, count → {"samples": [seconds from pg_notify sent to the listener]}
  close       → {"closed": true}, then the process exits
Prints `listening on 127.0.0.1:PORT` first. Run by floor.py, not by hand."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import grpc
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc
from buildcontrol_server.app import GRPC_OPTIONS
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


class BarePushService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self) -> None:
        self.outboxes: list[asyncio.Queue[str]] = []
        self.sent: dict[str, float] = {}
        self._stopped: dict[str, asyncio.Future[None]] = {}

    async def Connect(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[agent_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        await anext(request_iterator)  # the Hello
        await context.write(agent_pb2.ConnectResponse(welcome=agent_pb2.Welcome(session_id="f")))
        outbox: asyncio.Queue[str] = asyncio.Queue()
        writer = asyncio.create_task(self._write(outbox, context))
        self.outboxes.append(outbox)
        try:
            async for message in request_iterator:
                if message.WhichOneof("event") == "job_stopped":
                    future = self._stopped.pop(message.job_stopped.job_id, None)
                    if future is not None and not future.done():
                        future.set_result(None)
        finally:
            self.outboxes.remove(outbox)
            writer.cancel()

    async def _write(self, outbox: asyncio.Queue[str], context: grpc.aio.ServicerContext) -> None:
        while True:
            job_id = await outbox.get()
            stop = agent_pb2.StopJob(build_id="floor", job_id=job_id)
            self.sent[job_id] = time.monotonic()
            await context.write(agent_pb2.ConnectResponse(stop_job=stop))

    async def push(self, count: int) -> dict[str, Any]:
        if not self.outboxes:
            return {"error": "no agent stream is open"}
        loop = asyncio.get_running_loop()
        prefix = uuid.uuid4().hex[:8]
        ids = []
        for number in range(count):
            job_id = f"floor-{prefix}-{number}"
            stopped = self._stopped[job_id] = loop.create_future()
            random.choice(self.outboxes).put_nowait(job_id)
            await asyncio.wait_for(stopped, 30)
            ids.append(job_id)
        return {"sent": {job_id: self.sent.pop(job_id) for job_id in ids}}


async def sqlite_commits(count: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="buildcontrol-floor-") as directory:
        async with aiosqlite.connect(Path(directory) / "floor.sqlite3") as db:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("CREATE TABLE floor (id INTEGER PRIMARY KEY, n INTEGER)")
            await db.execute("INSERT INTO floor VALUES (1, 0)")
            await db.commit()
            samples = []
            for _ in range(count):
                started = time.monotonic()
                await db.execute("UPDATE floor SET n = n + 1 WHERE id = 1")
                await db.commit()
                samples.append(time.monotonic() - started)
    return samples


async def pg_commits(url: str, count: int) -> list[float]:
    connection = await asyncpg.connect(url)
    try:
        table = f"floor_{uuid.uuid4().hex[:8]}"
        await connection.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int)")
        await connection.execute(f"INSERT INTO {table} VALUES (1, 0)")
        samples = []
        for _ in range(count):  # outside a transaction block: one commit per statement
            started = time.monotonic()
            await connection.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1")
            samples.append(time.monotonic() - started)
        await connection.execute(f"DROP TABLE {table}")
    finally:
        await connection.close()
    return samples


async def pg_notifies(url: str, count: int) -> list[float]:
    listener, notifier = await asyncpg.connect(url), await asyncpg.connect(url)
    loop = asyncio.get_running_loop()
    arrived: dict[str, asyncio.Future[float]] = {}

    def on_notify(_connection: object, _pid: int, _channel: str, payload: str) -> None:
        future = arrived.get(payload)
        if future is not None and not future.done():
            future.set_result(time.monotonic())

    try:
        await listener.add_listener("floor", on_notify)
        samples = []
        for number in range(count):
            token = str(number)
            arrival = arrived[token] = loop.create_future()
            started = time.monotonic()
            await notifier.execute("SELECT pg_notify('floor', $1)", token)
            samples.append(await asyncio.wait_for(arrival, 30) - started)
            del arrived[token]
    finally:
        await listener.close()
        await notifier.close()
    return samples


async def answer(service: BarePushService, request: dict[str, Any]) -> dict[str, Any]:
    op, count = request["op"], int(request.get("count", 0))
    if op == "push":
        return await service.push(count)
    if op == "sqlite":
        return {"samples": await sqlite_commits(count)}
    if op == "pg_commit":
        return {"samples": await pg_commits(request["url"], count)}
    if op == "pg_notify":
        return {"samples": await pg_notifies(request["url"], count)}
    if op == "close":
        return {"closed": True}
    return {"error": f"unknown op {op!r}"}


async def main() -> None:
    server = grpc.aio.server(options=GRPC_OPTIONS)
    checks = health.aio.HealthServicer()
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    service = BarePushService()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        request = json.loads(line)
        try:
            reply = await answer(service, request)
        except Exception as error:  # reported to the benchmark, which fails loudly
            reply = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if request["op"] == "close":
            break
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
