"""One job on the agent: steps in order, results, stops. Real bash, no server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from buildcontrol.v1 import agent_pb2, build_pb2
from buildcontrol_client.job_runner import JobRun


def marked_processes(job_id: str) -> list[int]:
    """Live (non-zombie) processes whose environment holds BUILDCONTROL_JOB_ID=job_id."""
    needle = f"BUILDCONTROL_JOB_ID={job_id}".encode()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
            with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue  # exited meanwhile, or not readable by us: not one of ours
        state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
        if needle in variables and state != b"Z":
            pids.append(int(entry.name))
    return pids


class Fifo:
    """A named pipe a step writes lines to; reading it is an event, not a poll."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        # O_RDWR: opening never blocks and the pipe never reports end-of-file.
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self._buffer = b""

    async def read_line(self, seconds: float = 10.0) -> str:
        loop = asyncio.get_running_loop()
        while b"\n" not in self._buffer:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self._fd, lambda f=readable: f.done() or f.set_result(None))
            try:
                await asyncio.wait_for(readable, seconds)
            finally:
                loop.remove_reader(self._fd)
            self._buffer += os.read(self._fd, 4096)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        os.close(self._fd)


class Recorder:
    """The `emit` callback: keeps every message the job sends."""

    def __init__(self) -> None:
        self.messages: list[agent_pb2.ConnectRequest] = []

    def __call__(self, message: agent_pb2.ConnectRequest) -> None:
        self.messages.append(message)

    def kinds(self) -> list[str]:
        return [str(message.WhichOneof("event")) for message in self.messages]

    def last(self) -> agent_pb2.ConnectRequest:
        return self.messages[-1]


@pytest.fixture
def job_id() -> Iterator[str]:
    value = f"job-{uuid.uuid4().hex}"
    yield value
    for pid in marked_processes(value):  # a failed test must not leave sleeps behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Fifo]:
    pipe = Fifo(tmp_path / "events")
    yield pipe
    pipe.close()


def make_job(job_id: str, *commands: str, env: dict[str, str] | None = None) -> agent_pb2.AssignJob:
    return agent_pb2.AssignJob(
        build_id="b00000000000000000001",
        job_id=job_id,
        name="test",
        steps=[agent_pb2.AssignedStep(index=i, command=c) for i, c in enumerate(commands)],
        env=env or {},
    )


async def run_to_end(job: JobRun) -> None:
    await asyncio.wait_for(job.start(), 20)


async def test_steps_run_in_order_and_the_job_succeeds(job_id: str) -> None:
    emitted = Recorder()
    await run_to_end(JobRun(make_job(job_id, "true", "exit 0"), emitted, "a1"))

    assert emitted.kinds() == [
        "job_accepted",
        "step_started",
        "step_finished",
        "step_started",
        "step_finished",
        "job_finished",
    ]
    assert [
        m.step_finished.step_index for m in emitted.messages if m.HasField("step_finished")
    ] == [
        0,
        1,
    ]
    assert emitted.last().job_finished == agent_pb2.JobFinished(
        build_id="b00000000000000000001", job_id=job_id, succeeded=True, exit_code=0
    )


async def test_a_failing_step_ends_the_job_and_later_steps_never_run(
    job_id: str, tmp_path: Path
) -> None:
    emitted = Recorder()
    witness = tmp_path / "ran"
    job = make_job(job_id, "true", "exit 3", f"touch {witness}")

    await run_to_end(JobRun(job, emitted, "a1"))

    assert emitted.kinds().count("step_started") == 2
    assert emitted.messages[-2].step_finished.exit_code == 3
    assert emitted.last().job_finished.succeeded is False
    assert emitted.last().job_finished.exit_code == 3
    assert not witness.exists()


async def test_steps_see_job_env_and_their_ids_and_write_a_log(job_id: str, tmp_path: Path) -> None:
    emitted = Recorder()
    command = (
        'echo "$BUILDCONTROL_BUILD_ID $BUILDCONTROL_JOB_ID $BUILDCONTROL_STEP_INDEX'
        ' $BUILDCONTROL_AGENT_ID $GREETING" > seen.txt; echo to-the-log'
    )
    job = make_job(job_id, "true", command, env={"GREETING": "hi"})

    await run_to_end(JobRun(job, emitted, "a1", work_dir=tmp_path))

    seen = (tmp_path / job_id / "seen.txt").read_text().split()
    assert seen == ["b00000000000000000001", job_id, "1", "a1", "hi"]
    assert "to-the-log" in (tmp_path / f"{job_id}.log").read_text()


async def test_a_step_that_cannot_start_fails_the_job_with_127(job_id: str) -> None:
    emitted = Recorder()
    # A NUL byte in an environment variable makes the exec impossible.
    job = make_job(job_id, "true", env={"BROKEN": "a\0b"})

    await run_to_end(JobRun(job, emitted, "a1"))

    assert emitted.kinds() == ["job_accepted", "step_started", "step_finished", "job_finished"]
    assert emitted.last().job_finished.exit_code == 127
    assert emitted.last().job_finished.succeeded is False


async def test_stop_during_a_step_ends_the_group_and_runs_no_more_steps(
    job_id: str, fifo: Fifo, tmp_path: Path
) -> None:
    emitted = Recorder()
    witness = tmp_path / "ran"
    job = JobRun(
        make_job(job_id, f"sleep 600 & echo ready > {fifo.path}; sleep 600", f"touch {witness}"),
        emitted,
        "a1",
    )
    running = job.start()
    assert await fifo.read_line() == "ready"
    # A process in the middle of exec shows an empty environ for an instant: look again
    # (bounded) rather than fail on that instant.
    for _ in range(100):
        if len(marked_processes(job_id)) >= 2:
            break
        await asyncio.sleep(0.01)
    assert len(marked_processes(job_id)) >= 2

    assert job.request_stop(5.0) is True
    await asyncio.wait_for(running, 20)

    stopped = emitted.last().job_stopped
    assert stopped.outcome == build_pb2.JOB_OUTCOME_GRACEFUL
    assert stopped.exit_code == 128 + signal.SIGTERM
    assert "step_finished" not in emitted.kinds()  # stopped, not ended by itself
    assert marked_processes(job_id) == []
    assert not witness.exists()


async def test_stop_of_a_step_ignoring_sigterm_ends_killed(job_id: str, fifo: Fifo) -> None:
    emitted = Recorder()
    job = JobRun(
        make_job(job_id, f"trap '' TERM; echo ready > {fifo.path}; sleep 600"), emitted, "a1"
    )
    running = job.start()
    assert await fifo.read_line() == "ready"

    job.request_stop(0.5)
    await asyncio.wait_for(running, 20)

    stopped = emitted.last().job_stopped
    assert stopped.outcome == build_pb2.JOB_OUTCOME_KILLED
    assert stopped.exit_code == 128 + signal.SIGKILL
    assert marked_processes(job_id) == []


async def test_a_duplicate_stop_is_a_no_op_and_a_forced_one_kills_at_once(
    job_id: str, fifo: Fifo
) -> None:
    emitted = Recorder()
    job = JobRun(
        make_job(job_id, f"trap '' TERM; echo ready > {fifo.path}; sleep 600"), emitted, "a1"
    )
    running = job.start()
    assert await fifo.read_line() == "ready"

    assert job.request_stop(600) is True
    assert job.request_stop(600) is False  # the same stop again: nothing new happens
    assert job.request_stop(0) is False  # a forced one only brings SIGKILL forward
    await asyncio.wait_for(running, 20)

    assert emitted.kinds().count("job_stopped") == 1
    assert emitted.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_KILLED


async def test_stop_before_the_first_step_reports_graceful_without_exit_code(job_id: str) -> None:
    emitted = Recorder()
    job = JobRun(make_job(job_id, "sleep 600"), emitted, "a1")
    running = job.start()
    job.request_stop(5)  # before the job's task had a chance to start the step

    await asyncio.wait_for(running, 20)

    assert emitted.kinds() == ["job_accepted", "job_stopped"]
    assert emitted.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_GRACEFUL
    assert not emitted.last().job_stopped.HasField("exit_code")


async def test_stop_by_the_agent_itself_reports_a_failed_job(job_id: str, fifo: Fifo) -> None:
    emitted = Recorder()
    job = JobRun(make_job(job_id, f"echo ready > {fifo.path}; sleep 600"), emitted, "a1")
    running = job.start()
    assert await fifo.read_line() == "ready"

    job.request_stop(5, by_server=False)
    await asyncio.wait_for(running, 20)

    finished = emitted.last().job_finished
    assert finished.succeeded is False
    assert finished.exit_code == 128 + signal.SIGTERM


async def test_processes_left_in_the_background_are_killed_when_the_job_ends(
    job_id: str,
) -> None:
    emitted = Recorder()

    await run_to_end(JobRun(make_job(job_id, "sleep 600 &", "true"), emitted, "a1"))

    assert emitted.last().job_finished.succeeded is True
    assert marked_processes(job_id) == []
