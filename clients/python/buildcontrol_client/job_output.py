"""One job's output on the agent: its steps' stdout and stderr (one pipe per step, both
streams on it, so they interleave in the order written), with secrets masked, written
to the job's local copy, which is also what the uploader reads (log_uploader.py).

Bounded: at most `limit` bytes are kept (the local copy never grows past it, nor does
memory: bytes go from the pipe to the file); the rest is read and dropped, counted, and
the log ends with one line saying how much was dropped. The job's end adds the stop
line, if it was stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from buildcontrol_client.job_workspace import safe_file_name
from buildcontrol_client.log_turns import TURNS

log = logging.getLogger("buildcontrol.agent")

DEFAULT_LIMIT_BYTES = 64 * 1024 * 1024
# What the agent reads of all its jobs' pipes together, per second (and in one burst).
# The pipes are read on the event loop that also handles StopJob: unpaced, a few steps
# printing as fast as they can (`yes`) keep it busy and every stop waits behind them.
# Paced, a flooding step blocks on its full pipe (as it would on a slow terminal) and
# costs no CPU meanwhile; ordinary output is far below the rate.
READ_BYTES_PER_SECOND = 8 * 1024 * 1024
READ_BURST_BYTES = 1024 * 1024
# Only a read at least this large (the pipe had more than a few lines waiting: a step
# printing faster than it is read) can pause its pipe; smaller reads spend from the
# bucket but never wait, so a step printing a line now and then is not held up behind
# the floods (its lines reach a follower at once).
PACED_READ_BYTES = 16 * 1024
SECRET_MASK = b"***"
# How long a step's pipe may stay open after the step's own process exited (something
# it left in the background holds it) before the next step's output is let in anyway.
PIPE_DRAIN_SECONDS = 2.0


def limit_line(dropped: int, limit: int) -> bytes:
    return f"\n--- log limit reached: {dropped} bytes dropped (limit {limit} bytes) ---\n".encode()


def stop_line(signal_name: str, seconds: float, requested_by: str, reason: str) -> bytes:
    by = f" by {requested_by}" if requested_by else ""
    why = f": {reason}" if reason else ""
    return f"--- stopped: {signal_name} after {seconds:.1f} s{by}{why} ---\n".encode()


class SecretMask:
    """Replaces secret values with ***, also when one is split across two reads: the
    last (longest secret - 1) bytes wait for the next read."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self._hold = max((len(s) for s in self._secrets), default=1) - 1
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        if not self._secrets:
            return data
        text = self._masked(self._carry + data)
        cut = max(0, len(text) - self._hold)
        self._carry = text[cut:]
        return text[:cut]

    def flush(self) -> bytes:
        rest, self._carry = self._masked(self._carry), b""
        return rest

    def _masked(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, SECRET_MASK)
        return data


class ReadPacer:
    """A token bucket shared by every pipe of the agent: how long a pipe that just
    read `n` bytes pauses before it reads again."""

    def __init__(
        self, rate: float = READ_BYTES_PER_SECOND, burst: float = READ_BURST_BYTES
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def spend(self, count: int) -> float:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        self._tokens -= count
        return max(0.0, -self._tokens / self._rate)


# One per agent process: the pacing is of the one event loop that reads the pipes.
PACER = ReadPacer()


class _PipeReader(asyncio.Protocol):
    def __init__(self, output: JobOutput) -> None:
        self._output = output
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None
        self.connecting: asyncio.Task[object] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        flooding = len(data) >= PACED_READ_BYTES
        self._output.flooding = flooding
        self._output.write(data)
        pause = PACER.spend(len(data))
        if flooding and isinstance(self.transport, asyncio.ReadTransport):
            # A flood is read again once the pacing allows, and then in a loop pass
            # of its own (log_turns.py): never fifty pipes in the pass of a StopJob.
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(pause, TURNS.call_in_turn, self._resume)

    def _resume(self) -> None:
        if isinstance(self.transport, asyncio.ReadTransport) and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class JobOutput:
    def __init__(
        self,
        work_dir: Path | None,
        job_id: str,
        limit: int = DEFAULT_LIMIT_BYTES,
        secrets: Iterable[str] = (),
    ) -> None:
        self.limit = limit if limit > 0 else DEFAULT_LIMIT_BYTES
        self._file = self._open(work_dir, job_id)
        self._mask = SecretMask(secrets)
        # Bytes in the log (the local copy) and bytes dropped past the limit.
        self.size = 0
        self.dropped = 0
        self.complete = False
        # The last read of a pipe was large: its step prints faster than it is read
        # (the uploader then sends whole chunks, log_uploader.py).
        self.flooding = False
        self.grew = asyncio.Event()
        self._readers: list[_PipeReader] = []
        self._stop_line = b""

    @staticmethod
    def _open(work_dir: Path | None, job_id: str) -> IO[bytes]:
        if work_dir is not None:
            try:
                work_dir.mkdir(parents=True, exist_ok=True)
                return (work_dir / f"{safe_file_name(job_id)}.log").open("w+b")
            except OSError as error:
                log.warning("job %s: cannot write its log in %s: %s", job_id, work_dir, error)
        # No work dir: an unnamed temporary file, gone when closed.
        return tempfile.TemporaryFile()

    def write(self, data: bytes) -> None:
        """Keep `data` (masked) up to the limit; count the rest as dropped."""
        data = self._mask.feed(data)
        self._keep(data)

    def _keep(self, data: bytes) -> None:
        if self.complete or not data:
            return
        room = self.limit - self.size
        if room < len(data):
            self.dropped += len(data) - max(0, room)
            data = data[: max(0, room)]
        if data:
            self._file.seek(self.size)
            self._file.write(data)
            self._file.flush()
            self.size += len(data)
            self.grew.set()

    def read(self, offset: int, most: int) -> bytes:
        """Bytes of the log from `offset` (the uploader's read)."""
        self._file.seek(offset)
        return self._file.read(min(most, self.size - offset))

    def step_pipe(self, header: str) -> IO[bytes]:
        """The write end of a new pipe for a step's stdout and stderr, after the
        step's header line (the caller closes it once the step started: the child holds
        its own copy). Not a coroutine: a step starts in the same turn as its
        StepStarted, and the pipe holds what the step writes until the reader, made in
        the next turn, reads it. Call `drain` first, so steps never interleave."""
        self.write(header.encode())
        read_fd, write_fd = os.pipe()
        reader = _PipeReader(self)
        loop = asyncio.get_running_loop()
        reader.connecting = loop.create_task(
            loop.connect_read_pipe(lambda: reader, os.fdopen(read_fd, "rb", buffering=0))
        )
        self._readers.append(reader)
        return os.fdopen(write_fd, "wb", buffering=0)

    async def drain(self, seconds: float) -> None:
        """Until every step's pipe is read to its end, or `seconds` passed."""
        waiting = [r.closed for r in self._readers if not r.closed.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=seconds)
        self._readers = [r for r in self._readers if not r.closed.done()]

    def note_stop_line(self, line: bytes) -> None:
        self._stop_line = line

    def finish(self) -> None:
        """The job ended: the masked tail, the limit line, the stop line; complete."""
        self._keep(self._mask.flush())
        tail = self._stop_line
        if self.dropped:
            tail = limit_line(self.dropped, self.limit) + tail
        if tail:
            # Past the limit on purpose: the server leaves room for these lines.
            self._file.seek(self.size)
            self._file.write(tail)
            self._file.flush()
            self.size += len(tail)
        self.complete = True
        self.grew.set()

    def close(self) -> None:
        """Stop reading (a process the job left may still hold a pipe) and close."""
        for reader in self._readers:
            if reader.connecting is not None:
                reader.connecting.cancel()
            if reader.transport is not None:
                reader.transport.close()
        self._file.close()
