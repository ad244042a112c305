"""Uploading a job's log to the server (AgentService.UploadLogs), apart from the agent
stream so that no amount of output can delay a StopJob or a result.

One uploader per job reads the job's local copy (job_output.py: the spill, so memory
stays flat however far the upload is behind) and sends it in chunks with their offsets,
authenticated with the job's token. A stream ends when it has caught up (or after
STREAM_BYTES), and the server's answer is its stored size: the next stream starts
there. After a failure the next stream starts again at the last acknowledged offset;
the server skips what it already has, so nothing is lost or doubled. The job's result
waits for the last byte (bounded by the stop's deadline, or FINISH_SECONDS)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO

import grpc
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc

from buildcontrol_client.auth import auth_metadata
from buildcontrol_client.backoff import Backoff, BackoffPolicy
from buildcontrol_client.credentials import TlsOptions, open_channel
from buildcontrol_client.job_output import PIPE_DRAIN_SECONDS, JobOutput, stop_line
from buildcontrol_client.log_turns import TURNS
from buildcontrol_client.process_runner import JobTerminator, StopOutcome

log = logging.getLogger("buildcontrol.agent")

# Below glibc's 128 KiB mmap threshold: with 50 floods sending 256 KiB messages, the
# agent's and the server's RSS swung by 15 % (large buffers mapped, freed and mapped
# again); 64 KiB is also what a full pipe holds, a flood's read.
CHUNK_BYTES = 64 * 1024
# A stream ends (and its answer acknowledges what it carried) after this many bytes or
# seconds, or once it has caught up and nothing new came for STREAM_IDLE_SECONDS. Not
# at every catch-up: a flooding job catches up at every pipe read, and a stream per
# read (150 a second for 50 floods) cost the server's and the agent's event loops,
# which also carry the stops, more than the bytes themselves.
STREAM_BYTES = 8 * 1024 * 1024
STREAM_SECONDS = 5.0
STREAM_IDLE_SECONDS = 0.5
# A flooding job's output (job_output.py: its pipe had a backlog) goes in whole chunks,
# or once its oldest unsent byte waited this long: fewer, larger messages for the same
# bytes. Output that is not a flood is sent as it comes.
FLOOD_FLUSH_SECONDS = 0.5
# Longest a job's result waits for its log to reach the server when no stop deadline
# bounds it (a job that ended by itself).
FINISH_SECONDS = 10.0
# How long a job's end waits for its pipes to end.
FINISH_DRAIN_SECONDS = 1.0
# What the job's end gives its pipes and upload even when the stop's deadline is (about
# to be) past: a stop that reached a slow agent late still gets its last lines read and
# sent (a result after the deadline is ignored by the server; the log is not).
FINISH_FLOOR_SECONDS = 0.25
# Kept from the stop's deadline so that the result still arrives before it.
DEADLINE_MARGIN_SECONDS = 1.0
# A job whose log could not be sent by its end (the server unreachable) goes on
# uploading after its result for at most this long (until its token dies with it).
LINGER_SECONDS = 60.0
# Refusals that another attempt cannot change.
_FINAL_CODES = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNIMPLEMENTED,
}


class LogUplink:
    """The agent's one channel for log uploads (made on first use)."""

    def __init__(self, server: str, tls: TlsOptions | None = None) -> None:
        self._server = server
        self._tls = tls
        self._channel: grpc.aio.Channel | None = None
        # Uploads that go on after their job's result (LINGER_SECONDS).
        self._lingering: set[asyncio.Task[None]] = set()

    def linger(self, upload: asyncio.Task[None], then: Callable[[], None]) -> None:
        """Let `upload` go on for LINGER_SECONDS at most, then run `then`."""

        async def lingering() -> None:
            try:
                await asyncio.wait({upload}, timeout=LINGER_SECONDS)
            finally:
                upload.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await upload
                then()

        task = asyncio.create_task(lingering(), name=f"{upload.get_name()}-linger")
        self._lingering.add(task)
        task.add_done_callback(self._lingering.discard)

    def stub(self) -> agent_pb2_grpc.AgentServiceStub:
        if self._channel is None:
            self._channel = open_channel(self._server, tls=self._tls, sends_token=True)
        return agent_pb2_grpc.AgentServiceStub(self._channel)

    async def close(self) -> None:
        for task in list(self._lingering):
            task.cancel()
        if self._lingering:
            await asyncio.wait(set(self._lingering))
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


class JobLog:
    """A job's output and its upload; without an uplink the output is only kept locally."""

    def __init__(
        self, assignment: agent_pb2.AssignJob, work_dir: Path | None, uplink: LogUplink | None
    ) -> None:
        secret_names = set(assignment.secret_env_names)
        self.output = JobOutput(
            work_dir,
            assignment.job_id,
            assignment.log_limit_bytes,
            [value for name, value in assignment.env.items() if name in secret_names],
        )
        self._build_id = assignment.build_id
        self._job_id = assignment.job_id
        self._metadata = auth_metadata(assignment.job_token or None)
        self._uplink = uplink
        self._task: asyncio.Task[None] | None = None
        # Set once the server acknowledged a stream that carried the final flag.
        self._final_sent = False
        # Set while uploads fail (the server unreachable): the job's end does not wait.
        self._failing = asyncio.Event()
        # Who stopped the job and why (from the StopJob), and the monotonic time by
        # which its result must be out.
        self._stopped_by = ""
        self._stop_reason = ""
        self._deadline = float("inf")

    def step_pipe(self, index: int, title: str) -> IO[bytes]:
        """The write end of a new pipe for a step's output (see JobOutput.step_pipe)."""
        if self._uplink is not None and self._task is None:
            self._task = asyncio.create_task(self._upload(), name=f"log-{self._job_id}")
        return self.output.step_pipe(f"--- step {index}: {title}\n")

    async def previous_step_read(self) -> None:
        """Until the steps' pipes so far are read to their end (at most
        PIPE_DRAIN_SECONDS: something a step left running may hold its pipe)."""
        await self.output.drain(PIPE_DRAIN_SECONDS)

    def stop_received(self, stop: agent_pb2.StopJob) -> None:
        self._stopped_by = stop.requested_by
        self._stop_reason = stop.reason
        if stop.HasField("deadline"):
            left = stop.deadline.ToDatetime().timestamp() - time.time()
            self._deadline = min(self._deadline, time.monotonic() + left)

    def stopped(self, outcome: StopOutcome, terminator: JobTerminator, received_at: float) -> None:
        """`--- stopped: SIGTERM after 2.0 s by alice: wrong branch ---` at the log's end:
        the signal that ended the job, and how long after the first signal."""
        signalled = terminator.signalled_at
        if math.isnan(signalled):
            signalled = received_at  # nothing was left to signal
        gone = terminator.gone_at if not math.isnan(terminator.gone_at) else time.monotonic()
        name = "SIGTERM" if outcome is StopOutcome.GRACEFUL else "SIGKILL"
        seconds = max(0.0, gone - signalled)
        self.output.note_stop_line(stop_line(name, seconds, self._stopped_by, self._stop_reason))

    async def finish(self) -> None:
        """Read the steps' pipes to their end, then upload the rest, within the stop's
        deadline (less a margin) or FINISH_SECONDS; what is not sent by then stays in
        the local copy only."""
        budget = min(FINISH_SECONDS, self._deadline - DEADLINE_MARGIN_SECONDS - time.monotonic())
        started = time.monotonic()
        # The job's processes are gone by now: its pipes end at once, unless something
        # escaped the stop and holds one (then its output after this is not kept).
        await self.output.drain(max(FINISH_FLOOR_SECONDS, min(FINISH_DRAIN_SECONDS, budget / 2)))
        self.output.finish()
        task = self._task
        if task is not None and not task.done():
            left = max(FINISH_FLOOR_SECONDS, budget - (time.monotonic() - started))
            failing = asyncio.ensure_future(self._failing.wait())
            await asyncio.wait({task, failing}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            failing.cancel()
            if not task.done() and self._uplink is not None:
                log.warning(
                    "job %s: its log is not all uploaded by its end: going on after it",
                    self._job_id,
                )
                self._uplink.linger(task, self.output.close)
                return
        self.output.close()

    async def _upload(self) -> None:
        assert self._uplink is not None
        backoff = Backoff(BackoffPolicy())
        acked = 0
        while True:
            try:
                call = self._uplink.stub().UploadLogs(
                    self._requests(acked), metadata=self._metadata
                )
                acked = (await call).stored_size
                backoff.reset()
                self._failing.clear()
                if self._final_sent:
                    return
            except grpc.aio.AioRpcError as error:
                if error.code() in _FINAL_CODES:
                    log.warning(
                        "job %s: log upload refused: %s: %s",
                        self._job_id,
                        error.code().name,
                        error.details(),
                    )
                    return
                if error.code() is grpc.StatusCode.FAILED_PRECONDITION:
                    # The server has less than it acknowledged (its log was deleted or
                    # lost): send everything again; it keeps only what it lacks.
                    acked = 0
                self._failing.set()
                delay = backoff.next_delay()
                log.info(
                    "job %s: log upload failed (%s); again in %.2fs",
                    self._job_id,
                    error.code().name,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _requests(self, offset: int) -> AsyncIterator[agent_pb2.UploadLogsRequest]:
        output = self.output
        sent = 0
        ends_at = time.monotonic() + STREAM_SECONDS
        while await self._chunk_ready(offset, sent > 0, ends_at):
            if offset < output.size:
                if output.flooding:
                    await TURNS.turn()  # one flood message a loop pass, all jobs together
                data = output.read(offset, CHUNK_BYTES)
                final = output.complete and offset + len(data) == output.size
                yield self._request(offset, data, final)
                offset += len(data)
                sent += len(data)
                if final:
                    self._final_sent = True
                    return
                if sent >= STREAM_BYTES or time.monotonic() >= ends_at:
                    return
                continue
            yield self._request(offset, b"", True)  # complete, and nothing left to send
            self._final_sent = True
            return

    async def _chunk_ready(self, offset: int, may_end: bool, ends_at: float) -> bool:
        """Wait until the bytes past `offset` are worth a message: the log is complete,
        a whole chunk is there, or the output is not a flood (a line now and then goes
        at once, for its followers), or a flood's bytes waited FLOOD_FLUSH_SECONDS.
        False: the stream may end (`may_end`: it sent something) and nothing came for
        STREAM_IDLE_SECONDS, or its STREAM_SECONDS are up; its answer acknowledges."""
        output = self.output
        pending_since: float | None = None
        while True:
            output.grew.clear()
            pending = output.size - offset
            if output.complete or pending >= CHUNK_BYTES or (pending and not output.flooding):
                return True
            now = time.monotonic()
            if pending:
                pending_since = now if pending_since is None else pending_since
                timeout: float | None = pending_since + FLOOD_FLUSH_SECONDS - now
            else:
                timeout = min(STREAM_IDLE_SECONDS, ends_at - now) if may_end else None
            if timeout is not None and timeout <= 0:
                return pending > 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await output.grew.wait()
                    continue
            if not pending:
                return False

    def _request(self, offset: int, data: bytes, final: bool) -> agent_pb2.UploadLogsRequest:
        return agent_pb2.UploadLogsRequest(
            build_id=self._build_id, job_id=self._job_id, offset=offset, data=data, final=final
        )
