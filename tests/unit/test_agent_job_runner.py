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
from buildcontrol_client.job_runner import JobRun
from buildcontrol_proto.v1 import agent_pb2, build_pb2

from tests.support.step_processes import Fifo, at_least, marked_processes
from tests.unit.job_samples import Recorder, make_job


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
    assert len(await at_least(job_id, 2)) >= 2

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


# ---- cleanup (run_on_cancel) steps and forced stops ---------------------------------


def job_with_cleanup(job_id: str, *steps: tuple[str, bool]) -> agent_pb2.AssignJob:
    """A job from (command, run_on_cancel) pairs."""
    return agent_pb2.AssignJob(
        build_id="b00000000000000000001",
        job_id=job_id,
        name="test",
        steps=[
            agent_pb2.AssignedStep(index=i, command=command, run_on_cancel=cleanup)
            for i, (command, cleanup) in enumerate(steps)
        ],
    )


def step_events(emitted: Recorder) -> list[tuple[str, int]]:
    """(kind, step index) of every step message, in order."""
    events = []
    for message in emitted.messages:
        if message.HasField("step_started"):
            events.append(("started", message.step_started.step_index))
        elif message.HasField("step_finished"):
            events.append(("finished", message.step_finished.step_index))
    return events


async def test_in_a_normal_run_a_cleanup_step_is_an_ordinary_step(
    job_id: str, tmp_path: Path
) -> None:
    emitted = Recorder()
    ran = tmp_path / "ran"
    job = job_with_cleanup(job_id, ("true", False), (f"touch {ran}", True))

    await run_to_end(JobRun(job, emitted, "a1"))

    assert step_events(emitted) == [
        ("started", 0),
        ("finished", 0),
        ("started", 1),
        ("finished", 1),
    ]
    assert emitted.last().job_finished.succeeded is True
    assert ran.exists()


async def test_in_a_normal_run_a_cleanup_step_is_skipped_after_a_failure(
    job_id: str, tmp_path: Path
) -> None:
    emitted = Recorder()
    ran = tmp_path / "ran"
    job = job_with_cleanup(job_id, ("exit 3", False), (f"touch {ran}", True))

    await run_to_end(JobRun(job, emitted, "a1"))

    assert step_events(emitted) == [("started", 0), ("finished", 0)]
    assert emitted.last().job_finished.exit_code == 3
    assert not ran.exists()


async def test_cleanup_step_runs_after_the_main_step_was_stopped(
    job_id: str, fifo: Fifo, tmp_path: Path
) -> None:
    emitted = Recorder()
    main_pid, never, cleaned = tmp_path / "main.pid", tmp_path / "never", tmp_path / "cleaned"
    job = job_with_cleanup(
        job_id,
        (f"echo $$ > {main_pid}; echo ready > {fifo.path}; sleep 600", False),
        (f"touch {never}", False),
        # Proves the order: the main step's shell is gone when the cleanup step runs.
        (
            f'if kill -0 "$(cat {main_pid})" 2>/dev/null; then echo alive; else echo gone; fi'
            f" > {cleaned}",
            True,
        ),
    )
    run = JobRun(job, emitted, "a1")
    running = run.start()
    assert await fifo.read_line() == "ready"

    run.request_stop(5.0)
    await asyncio.wait_for(running, 20)

    assert step_events(emitted) == [("started", 0), ("started", 2), ("finished", 2)]
    assert emitted.messages[-2].step_finished.exit_code == 0
    stopped = emitted.last().job_stopped
    assert stopped.outcome == build_pb2.JOB_OUTCOME_GRACEFUL
    assert stopped.exit_code == 128 + signal.SIGTERM  # the main step's, not the cleanup's
    assert cleaned.read_text() == "gone\n"
    assert not never.exists()
    assert marked_processes(job_id) == []


async def test_every_cleanup_step_runs_even_after_one_fails(job_id: str, tmp_path: Path) -> None:
    emitted = Recorder()
    cleaned = tmp_path / "cleaned"
    job = job_with_cleanup(
        job_id, ("sleep 600", False), ("exit 4", True), (f"touch {cleaned}", True)
    )
    run = JobRun(job, emitted, "a1")
    running = run.start()
    run.request_stop(5.0)  # before the first step: nothing to signal, straight to cleanup

    await asyncio.wait_for(running, 20)

    assert step_events(emitted) == [
        ("started", 1),
        ("finished", 1),
        ("started", 2),
        ("finished", 2),
    ]
    assert [m.step_finished.exit_code for m in emitted.messages if m.HasField("step_finished")] == [
        4,
        0,
    ]
    assert emitted.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_GRACEFUL
    assert not emitted.last().job_stopped.HasField("exit_code")
    assert cleaned.exists()


async def test_skip_cleanup_kills_at_once_and_runs_no_cleanup(
    job_id: str, fifo: Fifo, tmp_path: Path
) -> None:
    emitted = Recorder()
    cleaned = tmp_path / "cleaned"
    job = job_with_cleanup(
        job_id, (f"echo ready > {fifo.path}; sleep 600", False), (f"touch {cleaned}", True)
    )
    run = JobRun(job, emitted, "a1")
    running = run.start()
    assert await fifo.read_line() == "ready"

    run.request_stop(600.0, skip_cleanup=True)  # the grace of a forced stop is ignored
    await asyncio.wait_for(running, 20)

    assert step_events(emitted) == [("started", 0)]
    stopped = emitted.last().job_stopped
    assert stopped.outcome == build_pb2.JOB_OUTCOME_KILLED
    assert stopped.exit_code == 128 + signal.SIGKILL
    assert not cleaned.exists()
    assert marked_processes(job_id) == []


async def test_escalation_during_the_grace_of_a_step_ignoring_sigterm_kills_at_once(
    job_id: str, fifo: Fifo, tmp_path: Path
) -> None:
    emitted = Recorder()
    cleaned = tmp_path / "cleaned"
    # The step reports the SIGTERM through the fifo, then carries on: only SIGKILL ends it.
    main = f"trap 'echo got-term > {fifo.path}' TERM; echo ready > {fifo.path}; " + (
        "while :; do sleep 600 & wait; done"
    )
    job = job_with_cleanup(job_id, (main, False), (f"touch {cleaned}", True))
    run = JobRun(job, emitted, "a1")
    running = run.start()
    assert await fifo.read_line() == "ready"

    assert run.request_stop(600.0) is True
    assert await fifo.read_line() == "got-term"  # inside a 600 s grace period now
    assert run.request_stop(600.0, skip_cleanup=True) is False
    await asyncio.wait_for(running, 20)  # far less than the grace: the escalation killed it

    assert emitted.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_KILLED
    assert emitted.last().job_stopped.exit_code == 128 + signal.SIGKILL
    assert step_events(emitted) == [("started", 0)]
    assert not cleaned.exists()
    assert marked_processes(job_id) == []


async def test_a_forced_stop_during_cleanup_kills_the_cleanup_step_and_reports_killed(
    job_id: str, fifo: Fifo, tmp_path: Path
) -> None:
    emitted = Recorder()
    later = tmp_path / "later"
    job = job_with_cleanup(
        job_id,
        ("sleep 600", False),
        (f"echo cleaning > {fifo.path}; sleep 600", True),
        (f"touch {later}", True),
    )
    run = JobRun(job, emitted, "a1")
    running = run.start()
    run.request_stop(5.0, cleanup_seconds=600.0)
    assert await fifo.read_line() == "cleaning"

    run.request_stop(5.0, skip_cleanup=True)
    await asyncio.wait_for(running, 20)

    assert step_events(emitted) == [("started", 1), ("finished", 1)]
    assert emitted.messages[-2].step_finished.exit_code == 128 + signal.SIGKILL
    assert emitted.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_KILLED
    assert not later.exists()
    assert marked_processes(job_id) == []


async def test_cleanup_past_its_timeout_is_killed_and_the_rest_skipped(
    job_id: str, fifo: Fifo, tmp_path: Path
) -> None:
    emitted = Recorder()
    later = tmp_path / "later"
    job = job_with_cleanup(
        job_id,
        (f"echo ready > {fifo.path}; sleep 600", False),
        (f"echo cleaning > {fifo.path}; sleep 600 & sleep 600", True),
        (f"touch {later}", True),
    )
    run = JobRun(job, emitted, "a1")
    running = run.start()
    assert await fifo.read_line() == "ready"

    run.request_stop(5.0, cleanup_seconds=0.3)
    assert await fifo.read_line() == "cleaning"
    await asyncio.wait_for(running, 20)

    assert step_events(emitted) == [("started", 0), ("started", 1), ("finished", 1)]
    assert emitted.messages[-2].step_finished.exit_code == 128 + signal.SIGKILL
    # The cleanup's overrun does not change how the main stop ended.
    assert emitted.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_GRACEFUL
    assert not later.exists()
    assert marked_processes(job_id) == []


async def test_a_zero_cleanup_timeout_runs_no_cleanup(job_id: str, tmp_path: Path) -> None:
    emitted = Recorder()
    cleaned = tmp_path / "cleaned"
    job = job_with_cleanup(job_id, ("sleep 600", False), (f"touch {cleaned}", True))
    run = JobRun(job, emitted, "a1")
    running = run.start()
    run.request_stop(5.0, cleanup_seconds=0.0)

    await asyncio.wait_for(running, 20)

    assert emitted.kinds() == ["job_accepted", "job_stopped"]
    assert not cleaned.exists()


async def test_a_duplicate_stop_during_cleanup_changes_nothing(
    job_id: str, fifo: Fifo, tmp_path: Path
) -> None:
    emitted = Recorder()
    go = Fifo(tmp_path / "go")  # the cleanup step waits on it: we decide when it ends
    job = job_with_cleanup(
        job_id, ("sleep 600", False), (f"echo cleaning > {fifo.path}; read line < {go.path}", True)
    )
    run = JobRun(job, emitted, "a1")
    running = run.start()
    run.request_stop(5.0)
    assert await fifo.read_line() == "cleaning"

    assert run.request_stop(5.0) is False  # re-sent on a reconnect: a no-op
    writer = os.open(go.path, os.O_WRONLY | os.O_NONBLOCK)
    os.write(writer, b"go on\n")
    os.close(writer)
    await asyncio.wait_for(running, 20)
    go.close()

    assert step_events(emitted) == [("started", 1), ("finished", 1)]
    assert emitted.messages[-2].step_finished.exit_code == 0
    assert emitted.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_GRACEFUL


async def test_the_agents_own_shutdown_runs_no_cleanup(
    job_id: str, fifo: Fifo, tmp_path: Path
) -> None:
    emitted = Recorder()
    cleaned = tmp_path / "cleaned"
    job = job_with_cleanup(
        job_id, (f"echo ready > {fifo.path}; sleep 600", False), (f"touch {cleaned}", True)
    )
    run = JobRun(job, emitted, "a1")
    running = run.start()
    assert await fifo.read_line() == "ready"

    run.request_stop(5.0, by_server=False)
    await asyncio.wait_for(running, 20)

    assert emitted.last().job_finished.succeeded is False
    assert not cleaned.exists()
