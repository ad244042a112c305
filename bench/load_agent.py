"""A load-generating agent session for benchmarks: speaks the real agent protocol over
its own gRPC connection, takes every job it is given, and confirms stops at once.
It records when each StopJob arrived (perf_counter) so latency can be measured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
from buildcontrol.v1 import agent_pb2, agent_pb2_grpc, build_pb2


class LoadAgent:
    def __init__(self, target: str, agent_id: str, capacity: int) -> None:
        # One channel (one TCP connection) per agent, as real agents have.
        self._channel = grpc.aio.insecure_channel(
            target, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.agent_id = agent_id
        self.capacity = capacity
        self._outgoing: asyncio.Queue[agent_pb2.ConnectRequest | None] = asyncio.Queue()
        self.jobs: dict[str, str] = {}  # job_id → build_id
        self.job_arrived = asyncio.Event()
        self.stop_seen: dict[str, float] = {}
        self._stop_waiters: dict[str, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None
        self.welcomed = asyncio.Event()
        # While set, confirmations of stops wait (to count the server's CANCELING
        # commits alone); release_stops() sends them.
        self.hold_stops = False
        self._held: list[agent_pb2.ConnectRequest] = []

    async def start(self) -> None:
        hello = agent_pb2.Hello(agent_id=self.agent_id, capacity=self.capacity)
        self._outgoing.put_nowait(agent_pb2.ConnectRequest(hello=hello))
        call = agent_pb2_grpc.AgentServiceStub(self._channel).Connect(self._requests())
        self._task = asyncio.create_task(self._read(call))
        await asyncio.wait_for(self.welcomed.wait(), 30)

    async def _requests(self) -> AsyncIterator[agent_pb2.ConnectRequest]:
        while (message := await self._outgoing.get()) is not None:
            yield message

    def _send(self, **event: object) -> None:
        self._outgoing.put_nowait(agent_pb2.ConnectRequest(**event))  # type: ignore[arg-type]

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:  # type: ignore[type-arg]
        async for message in call:
            kind = message.WhichOneof("event")
            if kind == "welcome":
                self.welcomed.set()
            elif kind == "assign_job":
                job = message.assign_job
                self.jobs[job.job_id] = job.build_id
                self._send(
                    job_accepted=agent_pb2.JobAccepted(build_id=job.build_id, job_id=job.job_id)
                )
                self.job_arrived.set()
            elif kind == "stop_job":
                now = time.perf_counter()
                stop = message.stop_job
                self.stop_seen.setdefault(stop.job_id, now)
                waiter = self._stop_waiters.pop(stop.job_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(now)
                stopped = agent_pb2.ConnectRequest(
                    job_stopped=agent_pb2.JobStopped(
                        build_id=stop.build_id,
                        job_id=stop.job_id,
                        outcome=build_pb2.JOB_OUTCOME_GRACEFUL,
                        exit_code=143,
                    )
                )
                if self.hold_stops:
                    self._held.append(stopped)
                else:
                    self._outgoing.put_nowait(stopped)

    def release_stops(self) -> None:
        self.hold_stops = False
        for message in self._held:
            self._outgoing.put_nowait(message)
        self._held.clear()

    def stop_arrival(self, job_id: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if job_id in self.stop_seen:
            future.set_result(self.stop_seen[job_id])
        else:
            self._stop_waiters[job_id] = future
        return future

    async def close(self) -> None:
        self._send(goodbye=agent_pb2.Goodbye(reason="bench done"))
        self._outgoing.put_nowait(None)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._channel.close()
