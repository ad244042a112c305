"""A scripted agent for rpc and security tests: speaks the real protocol over a real
channel and lets the test decide every message. (The reference agent is tested in
e2e/ and tests/unit/test_agent_*.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc, build_pb2

WAIT = 10.0


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


class AgentPeer:
    def __init__(
        self,
        target: str | None,
        agent_id: str,
        labels: dict[str, str] | None = None,
        capacity: int = 4,
        *,
        channel: grpc.aio.Channel | None = None,
        token: str | None = None,
        instance_id: str = "",
        features: tuple[agent_pb2.AgentFeature.ValueType, ...] = (),
    ) -> None:
        """Connect to `target` on a channel of its own, or use the test's `channel`
        (TLS, say); `token` goes in the metadata as a bearer token; `instance_id` is
        the agent process the Hello says it comes from ("": an agent too old to say);
        `features`: what its Hello declares (none: an agent of the base protocol)."""
        assert (target is None) != (channel is None), "give a target or a channel"
        self.agent_id = agent_id
        self.labels = labels or {}
        self.capacity = capacity
        self.instance_id = instance_id
        self.features = features
        self._owns_channel = channel is None
        self._channel = channel or grpc.aio.insecure_channel(target or "")
        self._token = token
        self._outgoing: asyncio.Queue[agent_pb2.ConnectRequest | None] = asyncio.Queue()
        self.received: asyncio.Queue[agent_pb2.ConnectResponse] = asyncio.Queue()
        self._call: (
            grpc.aio.StreamStreamCall[agent_pb2.ConnectRequest, agent_pb2.ConnectResponse] | None
        ) = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.status: grpc.StatusCode | None = None
        self.details = ""
        # The error the stream ended with (its trailers carry the rich status).
        self.error: grpc.aio.AioRpcError | None = None

    def hello(self, running: list[tuple[str, str]] | None = None) -> agent_pb2.Hello:
        return agent_pb2.Hello(
            agent_id=self.agent_id,
            instance_id=self.instance_id,
            labels=self.labels,
            capacity=self.capacity,
            running_jobs=[agent_pb2.RunningJob(build_id=b, job_id=j) for b, j in running or []],
            features=self.features,
        )

    def open(self, hello: agent_pb2.Hello | None = None) -> None:
        """Start the stream with `hello` (default: this agent's own) without waiting."""
        self._outgoing.put_nowait(agent_pb2.ConnectRequest(hello=hello or self.hello()))
        stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._call = stub.Connect(self._requests(), metadata=bearer(self._token))
        self._reader = asyncio.create_task(self._read())

    async def connect(
        self, running: list[tuple[str, str]] | None = None, hello: agent_pb2.Hello | None = None
    ) -> agent_pb2.Welcome:
        self.open(hello or self.hello(running))
        first = await self.next()
        assert first.WhichOneof("event") == "welcome", first
        return first.welcome

    async def refused(self, hello: agent_pb2.Hello | None = None) -> tuple[grpc.StatusCode, str]:
        """Open, and expect the server to end the stream before any Welcome."""
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
            self.error = error
        else:
            self.status = grpc.StatusCode.OK
        finally:
            self.closed.set()

    async def next(self, kind: str | None = None) -> agent_pb2.ConnectResponse:
        """The next message from the server (of `kind`, skipping others)."""
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

    def stopped(self, build_id: str, job_id: str, graceful: bool = True) -> None:
        outcome = build_pb2.JOB_OUTCOME_GRACEFUL if graceful else build_pb2.JOB_OUTCOME_KILLED
        self.send(
            job_stopped=agent_pb2.JobStopped(
                build_id=build_id, job_id=job_id, outcome=outcome, exit_code=143
            )
        )

    def finished(self, build_id: str, job_id: str, succeeded: bool = True) -> None:
        self.send(
            job_finished=agent_pb2.JobFinished(
                build_id=build_id, job_id=job_id, succeeded=succeeded
            )
        )

    async def ended(self) -> tuple[grpc.StatusCode, str]:
        """How the server ended the stream."""
        await asyncio.wait_for(self.closed.wait(), WAIT)
        assert self.status is not None
        return self.status, self.details

    async def leave(self) -> None:
        self.send(goodbye=agent_pb2.Goodbye(reason="test done"))
        self._outgoing.put_nowait(None)
        await asyncio.wait_for(self.closed.wait(), WAIT)
        if self._owns_channel:
            await self._channel.close()

    async def drop(self) -> None:
        """Vanish without a goodbye (a crash or a network cut)."""
        if self._call is not None:
            self._call.cancel()
        if self._owns_channel:
            await self._channel.close()
