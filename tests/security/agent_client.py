"""A scripted agent for the security tests: like tests/support/agent_peer.py, but on a
channel the test makes (TLS, or not) and with the token the test chooses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from buildcontrol.v1 import agent_pb2, agent_pb2_grpc

WAIT = 10.0


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


class ScriptedAgent:
    def __init__(
        self, channel: grpc.aio.Channel, agent_id: str, token: str | None, capacity: int = 4
    ) -> None:
        self.agent_id = agent_id
        self._channel = channel
        self._token = token
        self.capacity = capacity
        self._outgoing: asyncio.Queue[agent_pb2.ConnectRequest | None] = asyncio.Queue()
        self.received: asyncio.Queue[agent_pb2.ConnectResponse] = asyncio.Queue()
        self._call: (
            grpc.aio.StreamStreamCall[agent_pb2.ConnectRequest, agent_pb2.ConnectResponse] | None
        ) = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.status: grpc.StatusCode | None = None
        self.details = ""

    def open(self, hello: agent_pb2.Hello | None = None) -> None:
        """Start the stream with `hello` (default: this agent's own) without waiting."""
        hello = hello or agent_pb2.Hello(agent_id=self.agent_id, capacity=self.capacity)
        self._outgoing.put_nowait(agent_pb2.ConnectRequest(hello=hello))
        stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._call = stub.Connect(self._requests(), metadata=bearer(self._token))
        self._reader = asyncio.create_task(self._read())

    async def connect(self, hello: agent_pb2.Hello | None = None) -> agent_pb2.Welcome:
        self.open(hello)
        first = await self.next()
        assert first.WhichOneof("event") == "welcome", first
        return first.welcome

    async def refused(self, hello: agent_pb2.Hello | None = None) -> tuple[grpc.StatusCode, str]:
        """Open, expect the server to end the stream before any Welcome."""
        self.open(hello)
        await asyncio.wait_for(self.closed.wait(), WAIT)
        assert self.received.empty(), "the server answered a refused stream"
        assert self.status is not None
        return self.status, self.details

    async def _requests(self) -> AsyncIterator[agent_pb2.ConnectRequest]:
        while (message := await self._outgoing.get()) is not None:
            yield message

    async def _read(self) -> None:
        assert self._call is not None
        try:
            async for message in self._call:
                self.received.put_nowait(message)
        except grpc.aio.AioRpcError as error:
            self.status, self.details = error.code(), error.details() or ""
        else:
            self.status = grpc.StatusCode.OK
        finally:
            self.closed.set()

    async def next(self, kind: str | None = None) -> agent_pb2.ConnectResponse:
        while True:
            message = await asyncio.wait_for(self.received.get(), WAIT)
            if kind is None or message.WhichOneof("event") == kind:
                return message

    def send(self, **event: object) -> None:
        self._outgoing.put_nowait(agent_pb2.ConnectRequest(**event))  # type: ignore[arg-type]

    async def take_job(self) -> agent_pb2.AssignJob:
        assign = (await self.next("assign_job")).assign_job
        self.send(
            job_accepted=agent_pb2.JobAccepted(build_id=assign.build_id, job_id=assign.job_id)
        )
        self.send(
            step_started=agent_pb2.StepStarted(build_id=assign.build_id, job_id=assign.job_id)
        )
        return assign

    async def ended(self) -> tuple[grpc.StatusCode, str]:
        await asyncio.wait_for(self.closed.wait(), WAIT)
        assert self.status is not None
        return self.status, self.details

    async def leave(self) -> None:
        self.send(goodbye=agent_pb2.Goodbye(reason="test done"))
        self._outgoing.put_nowait(None)
        await asyncio.wait_for(self.closed.wait(), WAIT)

    def drop(self) -> None:
        if self._call is not None:
            self._call.cancel()
