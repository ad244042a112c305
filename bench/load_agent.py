"""A load-generating agent session: speaks the real agent protocol over its own gRPC
connection (one channel, one TCP connection, as real agents have), takes every job it
is given, and confirms stops.

Two ways to learn of a cancel:

- push (ours): the StopJob the server pushes on the open stream; the agent confirms
  it at once (JobStopped, GRACEFUL).
- poll (the field's way): the agent ignores pushed StopJob messages and, every
  `poll_interval` seconds (2 s, from a random phase, like a fleet of independent
  agents), asks GetBuild for the build of each job it runs; when the answer says the
  build is cancelling (or the job stopping) it stops and reports, as a polling CI agent
  does.

Times are `time.monotonic()` (CLOCK_MONOTONIC: one clock for every process of the
machine), so the process that sent a Cancel can subtract them from its own."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import grpc
from buildcontrol_proto.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    build_control_pb2,
    build_control_pb2_grpc,
    build_pb2,
)

PUSH = "push"
POLL = "poll"
MODES = (PUSH, POLL)

# What a polling agent takes as "my job must stop".
_CANCELLED_BUILD = (build_pb2.BUILD_STATUS_CANCELING, build_pb2.BUILD_STATUS_CANCELED)
_STOPPING_JOB = (build_pb2.JOB_STATUS_STOPPING, build_pb2.JOB_STATUS_CANCELED)

# Keepalive as agents on long-lived streams need it (docs/operations.md).
CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # its own connection, not a shared one
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


class LoadAgent:
    def __init__(
        self,
        target: str,
        agent_id: str,
        capacity: int,
        mode: str = PUSH,
        poll_interval: float = 2.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.target = target
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.agent_id = agent_id
        self.capacity = capacity
        self.mode = mode
        self.poll_interval = poll_interval
        self._on_change = on_change
        self._outgoing: asyncio.Queue[agent_pb2.ConnectRequest | None] = asyncio.Queue()
        self.jobs: dict[str, str] = {}  # job_id → build_id, taken and not stopped
        # job_id → monotonic time the agent learned it must stop (push: StopJob
        # arrived; poll: the GetBuild answer that said so arrived).
        self.stop_learned: dict[str, float] = {}
        self.pushes_ignored = 0
        self.polls = 0
        self.welcomed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reconnect: asyncio.Task[None] | None = None
        self._moving = asyncio.Lock()  # one reconnect at a time (a drain's, a move's)
        # The server's Welcome takes JobsStopped: a batch of stops is confirmed in one.
        self._batches = False

    async def start(self) -> None:
        # After a move the Hello lists the jobs held, as an agent's reconnect does.
        running = [agent_pb2.RunningJob(build_id=b, job_id=j) for j, b in self.jobs.items()]
        # Pushed stops come in batches as to the reference agent; a polling agent
        # takes none.
        features = [agent_pb2.AGENT_FEATURE_STOP_BATCHES] if self.mode == PUSH else []
        hello = agent_pb2.Hello(
            agent_id=self.agent_id, capacity=self.capacity, running_jobs=running, features=features
        )
        self._outgoing.put_nowait(agent_pb2.ConnectRequest(hello=hello))
        call = agent_pb2_grpc.AgentServiceStub(self._channel).Connect(_Requests(self._outgoing))
        reader = asyncio.create_task(self._read(call))
        self._tasks.append(reader)
        welcomed = asyncio.create_task(self.welcomed.wait())
        await asyncio.wait({welcomed, reader}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if not self.welcomed.is_set():
            welcomed.cancel()  # the stream ended first (a server going away), or no answer
            raise ConnectionError(f"{self.agent_id}: no Welcome from {self.target}")
        if self.mode == POLL:
            self._tasks.append(asyncio.create_task(self._poll()))

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:  # type: ignore[type-arg]
        async for message in call:
            kind = message.WhichOneof("event")
            if kind in ("stop_job", "stop_jobs"):
                now = time.monotonic()
                stops = message.stop_jobs.stops if kind == "stop_jobs" else [message.stop_job]
                if self.mode == PUSH:
                    self._stop_all(stops, now)
                else:
                    self.pushes_ignored += len(stops)
            elif kind == "assign_job":
                job = message.assign_job
                self.jobs[job.job_id] = job.build_id
                self._send(
                    job_accepted=agent_pb2.JobAccepted(build_id=job.build_id, job_id=job.job_id)
                )
                self._send(
                    step_started=agent_pb2.StepStarted(
                        build_id=job.build_id, job_id=job.job_id, step_index=0
                    )
                )
                self._on_change()
            elif kind == "welcome":
                self._batches = agent_pb2.AGENT_FEATURE_STOP_BATCHES in message.welcome.features
                self.welcomed.set()
            elif kind == "drain":
                # As the reference agent does: leave and say Hello again (a replica that
                # took over the builds of our jobs asks for it). Not one of _tasks: the
                # reconnect ends them, this one among them.
                self._reconnect = asyncio.create_task(self._hello_again())

    def _send(self, **event: object) -> None:
        self._outgoing.put_nowait(agent_pb2.ConnectRequest(**event))  # type: ignore[arg-type]

    def _stop_all(self, stops: list[agent_pb2.StopJob], learned_at: float) -> None:
        """Stop the jobs (the load agent runs no process) and confirm them at once:
        the stops of one StopJobs in one JobsStopped when the server takes them."""
        results = [
            result
            for stop in stops
            if (result := self._stopped(stop.build_id, stop.job_id, learned_at)) is not None
        ]
        if len(results) > 1 and self._batches:
            self._send(jobs_stopped=agent_pb2.JobsStopped(stopped=results))
        else:
            for result in results:
                self._send(job_stopped=result)
        if results:
            self._on_change()

    def _stop(self, build_id: str, job_id: str, learned_at: float) -> None:
        self._stop_all([agent_pb2.StopJob(build_id=build_id, job_id=job_id)], learned_at)

    def _stopped(
        self, build_id: str, job_id: str, learned_at: float
    ) -> agent_pb2.JobStopped | None:
        if job_id in self.stop_learned:
            return None  # a duplicate stop: a no-op, as the protocol asks
        self.stop_learned[job_id] = learned_at
        self.jobs.pop(job_id, None)
        return agent_pb2.JobStopped(
            build_id=build_id, job_id=job_id, outcome=build_pb2.JOB_OUTCOME_GRACEFUL, exit_code=143
        )

    async def _poll(self) -> None:
        stub = build_control_pb2_grpc.BuildControlStub(self._channel)
        loop = asyncio.get_running_loop()
        # A fixed schedule (no drift): start + k x interval, k = 0, 1, ...; the random
        # phase spreads the fleet's polls over the interval.
        start = loop.time() + random.uniform(0, self.poll_interval)
        tick = 0
        while True:
            await asyncio.sleep(max(0.0, start + tick * self.poll_interval - loop.time()))
            tick += 1
            held = list(self.jobs.items())
            if not held:
                continue
            self.polls += len(held)
            answers = await asyncio.gather(
                *(
                    stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))
                    for _, build_id in held
                ),
                return_exceptions=True,
            )
            for (job_id, build_id), answer in zip(held, answers, strict=True):
                if isinstance(answer, BaseException):
                    continue
                if _told_to_stop(answer.build, job_id):
                    self._stop(build_id, job_id, time.monotonic())

    async def move(self, target: str) -> None:
        """Drop the stream without a Goodbye (a disconnect, as when a server dies or a
        load balancer sends the next connection elsewhere) and say Hello to `target`
        with the jobs held; back once it answers Welcome."""
        async with self._moving:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._channel.close()
            # Ends gRPC's task feeding the old call, left waiting on the queue when the
            # call ended by itself (a server gone): closed, the channel sends nothing.
            self._outgoing.put_nowait(None)
            self.target, self._tasks = target, []
            self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            self._outgoing = asyncio.Queue()
            self.welcomed = asyncio.Event()
            await self.start()

    async def _hello_again(self) -> None:
        # A server that drains because it stops refuses the new stream: the agent
        # stays away, as it would until that server came back.
        with contextlib.suppress(ConnectionError):
            await self.move(self.target)

    async def close(self) -> None:
        if self._reconnect is not None:
            await asyncio.gather(self._reconnect, return_exceptions=True)
        for task in self._tasks[1:]:
            task.cancel()
        self._send(goodbye=agent_pb2.Goodbye(reason="bench done"))
        self._outgoing.put_nowait(None)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._channel.close()


class _Requests:
    """The stream's requests, the queue's messages until None. Not an async generator:
    when a move or a dying server ends the call while the generator waits on the
    queue, gRPC's consumer task is cancelled and the generator's finalizer then fails
    ("aclose(): asynchronous generator is already running", printed once per agent)."""

    def __init__(self, queue: asyncio.Queue[agent_pb2.ConnectRequest | None]) -> None:
        self._queue = queue

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> agent_pb2.ConnectRequest:
        message = await self._queue.get()
        if message is None:
            raise StopAsyncIteration
        return message


def _told_to_stop(build: build_pb2.Build, job_id: str) -> bool:
    if build.status in _CANCELLED_BUILD:
        return True
    return any(
        job.job_id == job_id and job.status in _STOPPING_JOB
        for stage in build.stages
        for job in stage.jobs
    )
