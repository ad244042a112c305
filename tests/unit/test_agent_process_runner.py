"""The agent's step runner on its own: real bash steps, real signals, in process groups
(the fallback without cgroups) and in a cgroup of the job's own where this machine has
cgroup v2.

Step processes are found the way the e2e tests find them: by a marker in
/proc/PID/environ. Readiness comes from the step itself through a FIFO, so no test
sleeps to "give the process time".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from buildcontrol_client.job_processes import JobProcesses
from buildcontrol_client.process_runner import (
    JobTerminator,
    StepProcess,
    StopOutcome,
    exit_code_of,
)

from tests.support.step_processes import Fifo, at_least, marked_processes


@pytest.fixture
def marker() -> Iterator[str]:
    value = f"test-{uuid.uuid4().hex}"
    yield value
    for pid in marked_processes(value):  # a failed test must not leave sleeps behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Fifo]:
    pipe = Fifo(tmp_path / "events")
    yield pipe
    pipe.close()


async def start_step(command: str, marker: str) -> tuple[StepProcess, JobProcesses]:
    processes = JobProcesses(marker)
    step = await StepProcess.start(
        command, {**os.environ, "BUILDCONTROL_JOB_ID": marker}, processes=processes
    )
    return step, processes


async def test_sigterm_ends_background_and_foreground_processes_gracefully(
    marker: str, fifo: Fifo
) -> None:
    step, processes = await start_step(f"sleep 600 & echo ready > {fifo.path}; sleep 600", marker)
    assert await fifo.read_line() == "ready"
    # bash (or the exec'd sleep) and `sleep &`
    assert len(await at_least(marker, 2)) >= 2

    outcome = await JobTerminator(processes, grace_seconds=5).run()

    assert outcome is StopOutcome.GRACEFUL
    assert marked_processes(marker) == []
    assert await step.wait() == 128 + signal.SIGTERM


async def test_step_ignoring_sigterm_is_killed_after_the_grace(marker: str, fifo: Fifo) -> None:
    step, processes = await start_step(f"trap '' TERM; echo ready > {fifo.path}; sleep 600", marker)
    assert await fifo.read_line() == "ready"

    started = time.monotonic()
    outcome = await JobTerminator(processes, grace_seconds=0.5).run()

    assert outcome is StopOutcome.KILLED
    assert time.monotonic() - started >= 0.5
    assert marked_processes(marker) == []
    assert await step.wait() == 128 + signal.SIGKILL


async def test_zero_grace_sends_sigkill_at_once(marker: str, fifo: Fifo) -> None:
    # Without SIGKILL this step would print "term" and live on.
    step, processes = await start_step(
        f"trap 'echo term > {fifo.path}' TERM; echo ready > {fifo.path}; sleep 600", marker
    )
    assert await fifo.read_line() == "ready"

    started = time.monotonic()
    outcome = await JobTerminator(processes, grace_seconds=0).run()

    assert outcome is StopOutcome.KILLED
    assert time.monotonic() - started < 5  # bounded by process exit, not by a grace
    assert marked_processes(marker) == []
    assert await step.wait() == 128 + signal.SIGKILL


async def test_shorter_grace_from_a_later_stop_kills_sooner(marker: str, fifo: Fifo) -> None:
    step, processes = await start_step(
        f"trap 'echo term > {fifo.path}' TERM; echo ready > {fifo.path};"
        " while :; do sleep 600 & wait $!; done",
        marker,
    )
    assert await fifo.read_line() == "ready"
    terminator = JobTerminator(processes, grace_seconds=600)
    stopping = asyncio.create_task(terminator.run())
    assert await fifo.read_line() == "term"  # SIGTERM arrived; the step shrugged it off

    terminator.hurry(0)

    assert await asyncio.wait_for(stopping, 10) is StopOutcome.KILLED
    assert marked_processes(marker) == []
    await step.wait()


async def test_group_that_already_ended_counts_as_graceful(marker: str) -> None:
    step, processes = await start_step("exit 3", marker)
    assert await step.wait() == 3

    assert await JobTerminator(processes, grace_seconds=0).run() is StopOutcome.GRACEFUL


def test_zombies_are_not_counted_as_live_members() -> None:
    # An exited, unreaped process keeps its group alive for kill(2); where PID 1 reaps
    # late, every orphan of a killed step looks like that.
    child = subprocess.Popen(["true"], start_new_session=True)
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, still a zombie
        os.killpg(child.pid, 0)  # the kernel still knows the group...
        processes = JobProcesses("zombie")
        processes.add_leader(child.pid)
        assert processes.members() == []  # ...but nothing in it runs
    finally:
        child.wait()


def test_exit_code_of_a_signalled_process_is_128_plus_the_signal() -> None:
    assert exit_code_of(-signal.SIGTERM) == 143
    assert exit_code_of(-signal.SIGKILL) == 137
    assert exit_code_of(0) == 0
    assert exit_code_of(3) == 3
