"""How the agent cuts a job's log into UploadLogs messages and streams, without a
server: the request stream of one job is driven directly. A flood goes in whole chunks
(or after FLOOD_FLUSH_SECONDS), output that is not a flood goes at once, and a stream
that caught up stays open for STREAM_IDLE_SECONDS before it ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from buildcontrol_client import log_uploader
from buildcontrol_client.log_uploader import CHUNK_BYTES, JobLog
from buildcontrol_proto.v1 import agent_pb2

# Short stand-ins for the real waits (0.5 s each), so each test takes a fraction of a second.
FLUSH = 0.2
IDLE = 0.2
WAIT = 10.0

Requests = AsyncIterator[agent_pb2.UploadLogsRequest]


@pytest.fixture
def job_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobLog:
    monkeypatch.setattr(log_uploader, "FLOOD_FLUSH_SECONDS", FLUSH)
    monkeypatch.setattr(log_uploader, "STREAM_IDLE_SECONDS", IDLE)
    assignment = agent_pb2.AssignJob(build_id="b1", job_id="b1-j0", log_limit_bytes=2**24)
    return JobLog(assignment, tmp_path, None)


def requests_of(job_log: JobLog) -> Requests:
    return job_log._requests(0)  # one stream's messages, from offset 0


def printed(job_log: JobLog, data: bytes, *, flooding: bool) -> None:
    """What a pipe read hands to the job's output (job_output.py's reader)."""
    job_log.output.flooding = flooding
    job_log.output.write(data)


async def next_message(requests: Requests) -> agent_pb2.UploadLogsRequest:
    return await asyncio.wait_for(anext(requests), WAIT)


async def test_output_that_is_not_a_flood_is_sent_as_it_comes(job_log: JobLog) -> None:
    requests = requests_of(job_log)
    printed(job_log, b"one line\n", flooding=False)
    first = await next_message(requests)
    assert (first.offset, first.data, first.final) == (0, b"one line\n", False)


async def test_a_flood_waits_for_a_whole_chunk(job_log: JobLog) -> None:
    requests = requests_of(job_log)
    message = asyncio.ensure_future(anext(requests))
    await asyncio.sleep(0)  # one loop pass: the stream waits for the first bytes
    printed(job_log, b"y\n" * 10_000, flooding=True)
    await asyncio.sleep(0)  # one pass: it saw them, and goes on waiting (not a chunk yet)
    assert not message.done()
    printed(job_log, b"y\n" * CHUNK_BYTES, flooding=True)
    first = await asyncio.wait_for(message, WAIT)
    assert (first.offset, len(first.data)) == (0, CHUNK_BYTES)


async def test_a_flood_smaller_than_a_chunk_goes_after_the_flush_time(job_log: JobLog) -> None:
    requests = requests_of(job_log)
    printed(job_log, b"y\n" * 10_000, flooding=True)
    started = time.monotonic()
    first = await next_message(requests)
    assert time.monotonic() - started >= FLUSH
    assert first.data == b"y\n" * 10_000


async def test_a_stream_that_caught_up_takes_what_comes_before_it_ends(job_log: JobLog) -> None:
    requests = requests_of(job_log)
    printed(job_log, b"one\n", flooding=False)
    await next_message(requests)
    later = asyncio.ensure_future(next_message(requests))
    printed(job_log, b"two\n", flooding=False)
    second = await later
    assert (second.offset, second.data) == (4, b"two\n")
    started = time.monotonic()
    with pytest.raises(StopAsyncIteration):
        await next_message(requests)  # nothing more: the stream ends (its answer acks)
    assert time.monotonic() - started >= IDLE


async def test_the_end_of_the_job_sends_everything_with_the_final_flag(job_log: JobLog) -> None:
    requests = requests_of(job_log)
    printed(job_log, b"y\n" * 10_000, flooding=True)
    job_log.output.finish()
    last = await next_message(requests)  # not held for the flush time: the log is complete
    assert (last.data, last.final) == (b"y\n" * 10_000, True)
    with pytest.raises(StopAsyncIteration):
        await next_message(requests)
