"""One AgentService.Connect stream: Hello and Welcome, then messages both ways.

The stream knows nothing of jobs. It writes what the Outbox holds (one writer task, so
writes never interleave), hands every server message to `on_message`, sends heartbeats,
and reports how it ended. A new stream (and a new channel) is made for every connection,
so a fresh attempt is never held back by the old channel's own reconnect backoff.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import Any

import grpc
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc

from buildcontrol_client.auth import Metadata
from buildcontrol_client.credentials import TlsOptions, open_channel
from buildcontrol_client.outbox import Outbox

log = logging.getLogger("buildcontrol.agent")

# How long a ping may go unanswered before the channel is considered dead.
KEEPALIVE_TIMEOUT_SECONDS = 10.0
# Results of stopped jobs queued together (a mass cancel's) leave as one JobsStopped of
# at most this many, when the server takes them. The stream's writes go one at a time:
# 50 JobStopped written one by one reached the server over ~60 ms, one loop pass each
# on an agent busy ending 50 jobs.
STOPPED_BATCH_MAX = 500


class StreamEnd(enum.Enum):
    """Why a stream that was welcomed came to an end (errors are raised instead)."""

    CLOSED_BY_SERVER = "closed by the server"
    DRAINED = "drained by the server"
    STOP_REQUESTED = "stop requested"


class AgentStreamError(Exception):
    """The server broke the protocol (e.g. ended the stream without a Welcome)."""


def keepalive_options(keepalive_seconds: float) -> list[tuple[str, Any]]:
    """Keepalive for a stream that may be silent for hours (see docs/agent-protocol.md): the
    server's min_ping_interval_without_data must stay below `keepalive_seconds`."""
    return [
        ("grpc.keepalive_time_ms", int(keepalive_seconds * 1000)),
        (
            "grpc.keepalive_timeout_ms",
            int(min(KEEPALIVE_TIMEOUT_SECONDS, keepalive_seconds) * 1000),
        ),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


class AgentStream:
    def __init__(
        self,
        target: str,
        outbox: Outbox,
        on_message: Callable[[agent_pb2.ConnectResponse], None],
        on_written: Callable[[agent_pb2.ConnectRequest], None],
        keepalive_seconds: float,
        metadata: Metadata = (),
        tls: TlsOptions | None = None,
    ) -> None:
        self._target = target
        self._metadata = metadata
        self._tls = tls
        self._outbox = outbox
        self._on_message = on_message
        self._on_written = on_written
        self._keepalive_seconds = keepalive_seconds
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._drained = asyncio.Event()
        self.drain_reason = ""
        # The server's Welcome takes JobsStopped: results queued together go as one.
        self._batch_results = False

    async def open(
        self, make_hello: Callable[[], agent_pb2.Hello], timeout_seconds: float
    ) -> agent_pb2.Welcome:
        """Send Hello and wait for Welcome. `make_hello` is called right before the write,
        so the Hello describes the agent as of the moment it goes out."""
        self._channel = open_channel(
            self._target,
            keepalive_options(self._keepalive_seconds),
            self._tls,
            sends_token=bool(self._metadata),
        )
        self._call = agent_pb2_grpc.AgentServiceStub(self._channel).Connect(metadata=self._metadata)
        async with asyncio.timeout(timeout_seconds):
            await self._call.write(agent_pb2.ConnectRequest(hello=make_hello()))
            first = await self._call.read()
        if first is grpc.aio.EOF:
            raise AgentStreamError("the server ended the stream without a Welcome")
        if not first.HasField("welcome"):
            raise AgentStreamError(f"expected Welcome, got {first.WhichOneof('event')}")
        welcome: agent_pb2.Welcome = first.welcome
        self._batch_results = agent_pb2.AGENT_FEATURE_STOP_BATCHES in welcome.features
        return welcome

    def start(self, heartbeat_seconds: float) -> None:
        """Begin exchanging messages; call once, after `open`."""
        self._reader = asyncio.create_task(self._read_loop(), name="agent-stream-reader")
        self._writer = asyncio.create_task(self._write_loop(), name="agent-stream-writer")
        heartbeat = asyncio.create_task(self._heartbeat_loop(heartbeat_seconds), name="heartbeat")
        self._tasks = [self._reader, self._writer, heartbeat]

    async def wait_end(self, stop: asyncio.Event) -> StreamEnd:
        """Return when the server ends or drains the stream, or `stop` is set. A broken
        stream raises its error (AioRpcError). The stream keeps running on return."""
        assert self._reader is not None and self._writer is not None
        stop_wait = asyncio.ensure_future(stop.wait())
        drain_wait = asyncio.ensure_future(self._drained.wait())
        try:
            await asyncio.wait(
                {self._reader, self._writer, stop_wait, drain_wait},
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stop_wait.cancel()
            drain_wait.cancel()
        for task in (self._reader, self._writer):
            if task.done():
                _raise_if_broken(task)
                return StreamEnd.CLOSED_BY_SERVER
        return StreamEnd.DRAINED if self._drained.is_set() else StreamEnd.STOP_REQUESTED

    async def say_goodbye(self, reason: str, timeout_seconds: float) -> None:
        """Write what is queued, then Goodbye, close our side, and give the server a moment
        to end the stream (it may still send StopJobs meanwhile; they are handled)."""
        assert self._reader is not None and self._writer is not None
        self._outbox.put(agent_pb2.ConnectRequest(goodbye=agent_pb2.Goodbye(reason=reason)))
        try:
            async with asyncio.timeout(timeout_seconds):
                await asyncio.wait({self._writer})
                _raise_if_broken(self._writer)
                await asyncio.wait({self._reader})
        except TimeoutError:
            log.warning("the server did not close the stream within %.1fs", timeout_seconds)
        except (grpc.RpcError, asyncio.InvalidStateError) as error:
            log.warning("the stream broke while saying goodbye: %s", describe_error(error))

    async def close(self) -> None:
        # Cancel the tasks before the call: a read interrupted by a local cancel would
        # otherwise raise CancelledError in a task that is not being cancelled.
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        for task in self._tasks:
            if not task.cancelled():
                # Failures were reported by wait_end or say_goodbye; reading the exception
                # here only keeps asyncio from warning that it was never retrieved.
                task.exception()
        if self._call is not None:
            self._call.cancel()
        if self._channel is not None:
            await self._channel.close()

    async def _read_loop(self) -> None:
        while True:
            response = await self._call.read()
            if response is grpc.aio.EOF:
                return
            if response.HasField("drain"):
                # Keep reading: the server may still send stops until it closes the stream.
                self.drain_reason = response.drain.reason
                self._drained.set()
                continue
            self._on_message(response)

    async def _write_loop(self) -> None:
        while True:
            messages = [await self._outbox.get()]
            if self._batch_results and messages[0].HasField("job_stopped"):
                messages += self._outbox.take_while(_is_stop_result, STOPPED_BATCH_MAX - 1)
            try:
                await self._call.write(_one_message(messages))
            except BaseException:
                # Not written (or not known to be): keep them for the next stream.
                for message in reversed(messages):
                    self._outbox.put_front(message)
                raise
            for message in messages:
                self._on_written(message)
            message = messages[-1]
            if message.HasField("goodbye"):
                await self._call.done_writing()
                return

    async def _heartbeat_loop(self, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            self._outbox.put(agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat()))


def _is_stop_result(message: agent_pb2.ConnectRequest) -> bool:
    return message.HasField("job_stopped")


def _one_message(messages: list[agent_pb2.ConnectRequest]) -> agent_pb2.ConnectRequest:
    """One message as it is; several JobStopped as one JobsStopped."""
    if len(messages) == 1:
        return messages[0]
    stopped = [message.job_stopped for message in messages]
    return agent_pb2.ConnectRequest(jobs_stopped=agent_pb2.JobsStopped(stopped=stopped))


def _raise_if_broken(task: asyncio.Task[None]) -> None:
    """Re-raise a finished task's failure; an InvalidStateError only says the call ended."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, asyncio.InvalidStateError):
        raise error


def describe_error(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error) or type(error).__name__
