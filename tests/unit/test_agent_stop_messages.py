"""A StopJobs of many jobs on the agent: every job's signal goes out before any stop
is logged, so a slow log (a full stderr pipe) delays no job's signal. Real bash."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from buildcontrol_client.job_runner import JobRun
from buildcontrol_client.stop_messages import take_stops
from buildcontrol_proto.v1 import agent_pb2, build_pb2
from google.protobuf.duration_pb2 import Duration

from tests.support.step_processes import Fifo, marked_processes
from tests.unit.job_samples import Recorder, make_job

JOBS = 5


@pytest.fixture
def job_ids() -> Iterator[list[str]]:
    values = [f"job-{uuid.uuid4().hex}" for _ in range(JOBS)]
    yield values
    for job_id in values:  # a failed test must not leave sleeps behind
        for pid in marked_processes(job_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class _StopLines(logging.Handler):
    """Records, at each stop's log line, which jobs were already stopping."""

    def __init__(self, jobs: dict[str, JobRun]) -> None:
        super().__init__(logging.INFO)
        self._jobs = jobs
        self.stopping_at_each_line: list[set[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("stopping job"):
            self.stopping_at_each_line.append(
                {job_id for job_id, job in self._jobs.items() if job.stopping}
            )


async def test_every_job_of_a_stop_batch_is_stopping_before_the_first_is_logged(
    job_ids: list[str], tmp_path: Path
) -> None:
    emitted = Recorder()
    jobs: dict[str, JobRun] = {}
    running = []
    for n, job_id in enumerate(job_ids):
        fifo = Fifo(tmp_path / f"ready-{n}")
        jobs[job_id] = JobRun(
            make_job(job_id, f"echo ready > {fifo.path}; sleep 600"), emitted, "a1"
        )
        running.append(jobs[job_id].start())
        assert await fifo.read_line() == "ready"
        fifo.close()
    lines = _StopLines(jobs)
    agent_log = logging.getLogger("buildcontrol.agent")
    agent_log.addHandler(lines)
    level = agent_log.level
    agent_log.setLevel(logging.INFO)
    try:
        stops = agent_pb2.StopJobs(
            stops=[
                agent_pb2.StopJob(
                    build_id="b00000000000000000001",
                    job_id=job_id,
                    grace_period=Duration(seconds=0),
                    skip_cleanup=True,
                )
                for job_id in [*job_ids, "job-not-here"]
            ]
        )
        take_stops(jobs, stops.stops)
    finally:
        agent_log.removeHandler(lines)
        agent_log.setLevel(level)
    await asyncio.wait_for(asyncio.gather(*running), 20)

    # Each line came after every job of the batch was stopping (before: job k's line
    # came before job k+1's signal).
    assert lines.stopping_at_each_line == [set(job_ids)] * JOBS
    outcomes = [m.job_stopped.outcome for m in emitted.messages if m.HasField("job_stopped")]
    assert outcomes == [build_pb2.JOB_OUTCOME_KILLED] * JOBS
    assert all(marked_processes(job_id) == [] for job_id in job_ids)
