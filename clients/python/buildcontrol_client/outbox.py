"""What the agent still has to tell the server, kept across reconnects.

- Outbox: messages in order, for whichever stream is up; while none is, they wait.
- ResultLog: every job result (JobFinished/JobStopped) until a Welcome proves the server
  has it. A message written to a stream that then breaks may or may not have arrived, so
  results are re-sent in the next Hello (the server ignores ones it already has). The
  Welcome that answers a Hello confirms everything that Hello carried.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from buildcontrol.v1 import agent_pb2

# Results written on a stream that stays up are delivered; they are kept only in case the
# stream breaks soon after, and dropped after this long (or beyond the count) to keep
# Hello small on an agent that runs for weeks.
RESEND_WINDOW_SECONDS = 600.0
MAX_KEPT_RESULTS = 1000


class Outbox:
    """A FIFO of messages for the stream writer; `put_front` gives back an unwritten one."""

    def __init__(self) -> None:
        self._messages: deque[agent_pb2.ConnectRequest] = deque()
        self._not_empty = asyncio.Event()

    def put(self, message: agent_pb2.ConnectRequest) -> None:
        self._messages.append(message)
        self._not_empty.set()

    def put_front(self, message: agent_pb2.ConnectRequest) -> None:
        self._messages.appendleft(message)
        self._not_empty.set()

    async def get(self) -> agent_pb2.ConnectRequest:
        while not self._messages:
            self._not_empty.clear()
            await self._not_empty.wait()
        return self._messages.popleft()

    def take_all(self) -> list[agent_pb2.ConnectRequest]:
        messages = list(self._messages)
        self._messages.clear()
        return messages

    def __len__(self) -> int:
        return len(self._messages)


@dataclass
class _Result:
    message: agent_pb2.ConnectRequest
    written_at: float | None = None


class ResultLog:
    """Job results not yet confirmed by a Welcome."""

    def __init__(self) -> None:
        self._results: dict[str, _Result] = {}  # by job id, oldest first

    def add(self, message: agent_pb2.ConnectRequest) -> None:
        if not is_result(message):
            raise ValueError(f"not a job result: {message.WhichOneof('event')}")
        self._results[job_id_of(message)] = _Result(message)
        self._prune()

    def has(self, job_id: str) -> bool:
        return job_id in self._results

    def mark_written(self, message: agent_pb2.ConnectRequest) -> None:
        """Note that a message went out on a stream (only results are tracked)."""
        if not is_result(message):
            return
        result = self._results.get(job_id_of(message))
        if result is not None and result.written_at is None:
            result.written_at = time.monotonic()

    def fill_hello(self, hello: agent_pb2.Hello) -> list[str]:
        """Put every kept result into `hello`; return their job ids for `confirm`."""
        self._prune()
        for result in self._results.values():
            if result.message.HasField("job_finished"):
                hello.finished_jobs.append(result.message.job_finished)
            else:
                hello.stopped_jobs.append(result.message.job_stopped)
        return list(self._results)

    def confirm(self, job_ids: list[str]) -> None:
        """The server welcomed a Hello carrying these results: it has them."""
        for job_id in job_ids:
            self._results.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._results)

    def unsent(self) -> int:
        """Results never written to any stream: the server cannot know them."""
        return sum(1 for result in self._results.values() if result.written_at is None)

    def _prune(self) -> None:
        too_old = time.monotonic() - RESEND_WINDOW_SECONDS
        # A result never written to any stream is the only copy: it is never dropped.
        for job_id, result in list(self._results.items()):
            if result.written_at is not None and result.written_at < too_old:
                del self._results[job_id]
        for job_id, result in list(self._results.items()):
            if len(self._results) <= MAX_KEPT_RESULTS:
                break
            if result.written_at is not None:
                del self._results[job_id]


def is_result(message: agent_pb2.ConnectRequest) -> bool:
    return message.WhichOneof("event") in ("job_finished", "job_stopped")


def job_id_of(message: agent_pb2.ConnectRequest) -> str:
    """The job a message is about ("" for heartbeats, Hello and Goodbye)."""
    event = message.WhichOneof("event")
    job_id: str = getattr(getattr(message, event), "job_id", "") if event else ""
    return job_id
