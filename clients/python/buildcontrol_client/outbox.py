"""What the agent still has to tell the server, kept across reconnects.

- Outbox: messages in order, for whichever stream is up; while none is, they wait.
- ResultLog: every job result (JobFinished/JobStopped) until the server acknowledges it
  by its report id in ReportsCommitted, which it sends only after the result is stored.
  A result written to a stream may or may not have arrived, and one that arrived may
  not be stored yet when the stream drops, so every result not yet acknowledged is sent
  again in the next Hello (the server treats ones it has as no-ops and acknowledges
  them). A Welcome proves nothing about the results its Hello carried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from buildcontrol_proto.v1 import agent_pb2

log = logging.getLogger("buildcontrol.agent")

# A bound on memory and on the Hello's size if a server never acknowledges (an old one
# without ReportsCommitted): beyond it the oldest results already written are dropped.
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

    def take_while(
        self, wanted: Callable[[agent_pb2.ConnectRequest], bool], limit: int
    ) -> list[agent_pb2.ConnectRequest]:
        """The oldest messages, at most `limit`, as long as each is `wanted`; never waits."""
        taken: list[agent_pb2.ConnectRequest] = []
        while self._messages and len(taken) < limit and wanted(self._messages[0]):
            taken.append(self._messages.popleft())
        return taken

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
    """Job results the server has not acknowledged yet."""

    def __init__(self) -> None:
        self._results: dict[str, _Result] = {}  # by job id, oldest first
        self._job_of_report: dict[str, str] = {}  # report id → job id
        # Set while no result waits for its acknowledgement (`all_stored`).
        self._none_kept = asyncio.Event()
        self._none_kept.set()
        # Report ids: unique within this agent process; the prefix keeps ids of an
        # earlier process with the same agent id from being taken for these.
        self._prefix = uuid.uuid4().hex[:12]
        self._numbers = itertools.count(1)

    def add(self, message: agent_pb2.ConnectRequest) -> None:
        """Keep a result, giving it a report id (set in `message` itself)."""
        if not is_result(message):
            raise ValueError(f"not a job result: {message.WhichOneof('event')}")
        job_id = job_id_of(message)
        report_id = f"{self._prefix}-{next(self._numbers)}"
        result = message.job_finished if message.HasField("job_finished") else message.job_stopped
        result.report_id = report_id
        previous = self._results.pop(job_id, None)
        if previous is not None:
            self._job_of_report.pop(report_id_of(previous.message), None)
        self._results[job_id] = _Result(message)
        self._job_of_report[report_id] = job_id
        self._none_kept.clear()
        self._prune()

    def has(self, job_id: str) -> bool:
        return job_id in self._results

    # The bound is the API: an older server never acknowledges, a stream that is down
    # does not until it is back; either way the caller goes on after `timeout`.
    async def all_stored(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return once the server acknowledged every result kept here, or after
        `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_kept.wait(), timeout)

    def _forgotten(self) -> None:
        if not self._results:
            self._none_kept.set()

    def mark_written(self, message: agent_pb2.ConnectRequest) -> None:
        """Note that a message went out on a stream (only results are tracked)."""
        if not is_result(message):
            return
        result = self._results.get(job_id_of(message))
        if result is not None and result.written_at is None:
            result.written_at = time.monotonic()

    def fill_hello(self, hello: agent_pb2.Hello) -> list[str]:
        """Put every result not acknowledged yet into `hello`; return their job ids."""
        for result in self._results.values():
            if result.message.HasField("job_finished"):
                hello.finished_jobs.append(result.message.job_finished)
            else:
                hello.stopped_jobs.append(result.message.job_stopped)
        return list(self._results)

    def acknowledge(self, report_ids: Iterable[str]) -> int:
        """The server stored these results (ReportsCommitted): forget them. Ids not
        kept (acknowledged twice, or never ours) are ignored. Returns how many went."""
        forgotten = 0
        for report_id in report_ids:
            job_id = self._job_of_report.pop(report_id, None)
            if job_id is not None and self._results.pop(job_id, None) is not None:
                forgotten += 1
        self._forgotten()
        return forgotten

    def __len__(self) -> int:
        return len(self._results)

    def unsent(self) -> int:
        """Results never written to any stream: the server cannot know them."""
        return sum(1 for result in self._results.values() if result.written_at is None)

    def _prune(self) -> None:
        # A result never written to any stream is the only copy: it is never dropped.
        for job_id, result in list(self._results.items()):
            if len(self._results) <= MAX_KEPT_RESULTS:
                break
            if result.written_at is not None:
                log.warning(
                    "job %s: result never acknowledged, dropped (over %d kept)",
                    job_id,
                    MAX_KEPT_RESULTS,
                )
                del self._results[job_id]
                self._job_of_report.pop(report_id_of(result.message), None)


def is_result(message: agent_pb2.ConnectRequest) -> bool:
    return message.WhichOneof("event") in ("job_finished", "job_stopped")


def report_id_of(message: agent_pb2.ConnectRequest) -> str:
    """The report id a result carries ("" for other messages)."""
    if message.HasField("job_finished"):
        return message.job_finished.report_id
    if message.HasField("job_stopped"):
        return message.job_stopped.report_id
    return ""


def job_id_of(message: agent_pb2.ConnectRequest) -> str:
    """The job a message is about ("" for heartbeats, Hello and Goodbye)."""
    event = message.WhichOneof("event")
    job_id: str = getattr(getattr(message, event), "job_id", "") if event else ""
    return job_id
