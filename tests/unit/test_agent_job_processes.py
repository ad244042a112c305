"""How the agent contains a job's processes, with real steps and real signals: a cgroup
of the job's own (where this machine lets the test create one) and the process-group
fallback; stops that never read all of /proc; stops that do not wait for each other;
the environment a step gets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from buildcontrol_client.job_cgroup import CgroupTree
from buildcontrol_client.job_processes import ProcessHost
from buildcontrol_client.job_records import JobRecord, RunningJobRecords
from buildcontrol_client.job_runner import JobRun
from buildcontrol_client.job_runtime import JobRuntime
from buildcontrol_client.process_privileges import become_child_subreaper
from buildcontrol_client.process_tree import STEP_LEADERS
from buildcontrol_client.step_environment import step_environment
from buildcontrol_proto.v1 import agent_pb2, build_pb2

from tests.support.step_processes import Fifo, at_least, marked_processes
from tests.unit.fake_build_control import parse
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


@pytest.fixture
def cgroups() -> Iterator[CgroupTree]:
    tree = CgroupTree.create(None, f"test-{uuid.uuid4().hex[:12]}")
    if tree is None:
        pytest.skip("no writable cgroup v2 here")
    yield tree
    for child in tree.base.iterdir():
        if child.is_dir():
            with contextlib.suppress(OSError):
                (child / "cgroup.kill").write_text("1")
                child.rmdir()
    tree.remove()


@pytest.fixture(params=["cgroup", "process-groups"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobRuntime]:
    records = RunningJobRecords(tmp_path / "work")
    if request.param == "process-groups":
        # As the CLI's agent: the subreaper of its steps' orphans (for this test only).
        assert become_child_subreaper()
        try:
            yield JobRuntime(ProcessHost(subreaper=True), records=records)
        finally:
            become_child_subreaper(False)
        return
    tree: CgroupTree = request.getfixturevalue("cgroups")
    yield JobRuntime(ProcessHost(tree), records=records)


def escaping_job(job_id: str, fifo: Fifo) -> agent_pb2.AssignJob:
    # The escape's parent (`setsid -f`) exits at once: without a cgroup the escape is
    # found only while its parent chain holds, or by its BUILDCONTROL_JOB_ID.
    return make_job(
        job_id,
        f"setsid -f sleep 600; sleep 600 & echo ready > {fifo.path}; wait",
    )


async def test_a_stop_kills_background_children_and_setsid_escapes(
    job_id: str, fifo: Fifo, runtime: JobRuntime
) -> None:
    emitted = Recorder()
    job = JobRun(escaping_job(job_id, fifo), emitted, "a1", runtime=runtime)
    running = job.start()
    assert await fifo.read_line() == "ready"
    assert len(await at_least(job_id, 3)) >= 3  # bash, `sleep &`, the escape

    job.request_stop(5.0)
    await asyncio.wait_for(running, 20)

    assert emitted.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_GRACEFUL
    assert marked_processes(job_id) == []


async def test_a_job_runs_in_its_cgroup_which_is_removed_at_its_end(
    job_id: str, fifo: Fifo, cgroups: CgroupTree
) -> None:
    runtime = JobRuntime(ProcessHost(cgroups))
    job = JobRun(
        make_job(job_id, f"echo ready > {fifo.path}; sleep 600"), Recorder(), "a1", runtime=runtime
    )
    running = job.start()
    assert await fifo.read_line() == "ready"
    members = (cgroups.base / f"job-{job_id}" / "cgroup.procs").read_text().split()
    assert {int(pid) for pid in members} == set(await at_least(job_id, 1))

    job.request_stop(0)
    await asyncio.wait_for(running, 20)

    assert not (cgroups.base / f"job-{job_id}").exists()


async def test_a_stop_never_reads_all_of_proc(
    job_id: str, fifo: Fifo, runtime: JobRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    emitted = Recorder()
    job = JobRun(
        make_job(job_id, f"sleep 600 & echo ready > {fifo.path}; wait"),
        emitted,
        "a1",
        runtime=runtime,
    )
    running = job.start()
    assert await fifo.read_line() == "ready"
    assert len(await at_least(job_id, 2)) >= 2
    scans: list[Any] = []
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if str(path).rstrip("/") == "/proc":
            scans.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    real_listdir = os.listdir
    monkeypatch.setattr(
        os,
        "listdir",
        lambda path=".": (
            scans.append(path) or real_listdir(path)
            if str(path).rstrip("/") == "/proc"
            else real_listdir(path)
        ),
    )

    job.request_stop(5.0)
    await asyncio.wait_for(running, 20)
    monkeypatch.undo()  # the test's own look below reads all of /proc

    assert scans == []
    assert emitted.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_GRACEFUL
    assert marked_processes(job_id) == []


async def test_a_job_ignoring_sigterm_does_not_delay_another_jobs_stop(
    fifo: Fifo, runtime: JobRuntime
) -> None:
    stubborn_id, plain_id = f"job-{uuid.uuid4().hex}", f"job-{uuid.uuid4().hex}"
    stubborn_out, plain_out = Recorder(), Recorder()
    stubborn = JobRun(
        make_job(stubborn_id, f"trap '' TERM; echo ready > {fifo.path}; sleep 600"),
        stubborn_out,
        "a1",
        runtime=runtime,
    )
    plain = JobRun(
        make_job(plain_id, f"echo ready > {fifo.path}; sleep 600"),
        plain_out,
        "a1",
        runtime=runtime,
    )
    stubborn_task, plain_task = stubborn.start(), plain.start()
    try:
        assert [await fifo.read_line(), await fifo.read_line()] == ["ready", "ready"]

        stubborn.request_stop(600)  # it shrugs off SIGTERM and would wait 10 minutes
        plain.request_stop(600)
        await asyncio.wait_for(plain_task, 20)

        assert plain_out.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_GRACEFUL
        assert not stubborn_task.done()
        assert marked_processes(plain_id) == []
    finally:
        stubborn.request_stop(0, skip_cleanup=True)
        await asyncio.wait_for(stubborn_task, 20)
    assert stubborn_out.last().job_stopped.outcome == build_pb2.JOB_OUTCOME_KILLED
    assert marked_processes(stubborn_id) == []


@pytest.mark.parametrize(
    ("grace", "outcome"),
    [(0.0, build_pb2.JOB_OUTCOME_KILLED), (5.0, build_pb2.JOB_OUTCOME_GRACEFUL)],
)
async def test_a_stop_signals_the_jobs_processes_before_the_agent_does_anything_else(
    job_id: str, fifo: Fifo, runtime: JobRuntime, grace: float, outcome: int
) -> None:
    emitted = Recorder()
    job = JobRun(
        make_job(job_id, f"echo ready > {fifo.path}; exec sleep 600"),
        emitted,
        "a1",
        runtime=runtime,
    )
    running = job.start()
    assert await fifo.read_line() == "ready"
    (pid,) = await at_least(job_id, 1)
    descriptor = os.pidfd_open(pid)
    try:
        job.request_stop(grace)
        # No await since the stop: the job's own task has not run, yet the step got
        # its signal (SIGKILL with no grace, SIGTERM otherwise) and died of it.
        readable, _, _ = select.select([descriptor], [], [], 20)
    finally:
        os.close(descriptor)
    assert readable == [descriptor]
    await asyncio.wait_for(running, 20)
    assert emitted.last().job_stopped.outcome == outcome
    assert marked_processes(job_id) == []


async def test_a_running_job_is_recorded_in_the_work_dir_until_its_result(
    job_id: str, fifo: Fifo, runtime: JobRuntime, tmp_path: Path
) -> None:
    records = runtime.records
    job = JobRun(make_job(job_id, f"echo ready > {fifo.path}; sleep 600"), Recorder(), "a1",
                 runtime=runtime)  # fmt: skip
    running = job.start()
    assert await fifo.read_line() == "ready"

    [record] = records.read_all()
    assert (record.build_id, record.job_id) == ("b00000000000000000001", job_id)
    assert len(record.pgids) == 1
    assert (record.cgroup is not None) == (runtime.host.cgroups is not None)

    job.request_stop(0)
    await asyncio.wait_for(running, 20)
    assert records.read_all() == []


def test_steps_get_an_allow_listed_environment_never_the_agents_token() -> None:
    agent_env = {
        "PATH": "/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "BUILDCONTROL_TOKEN": "agent-secret",
        "AWS_SECRET_ACCESS_KEY": "cloud-secret",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
    }
    job_env = {"GREETING": "hi", "PATH": "/opt/bin:/bin", "BUILDCONTROL_JOB_ID": "forged"}

    env = step_environment(
        agent_env, job_env, agent_id="a1", build_id="b1", job_id="j1", step_index=2
    )

    assert env == {
        "PATH": "/opt/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "GREETING": "hi",
        "BUILDCONTROL_AGENT_ID": "a1",
        "BUILDCONTROL_BUILD_ID": "b1",
        "BUILDCONTROL_JOB_ID": "j1",
        "BUILDCONTROL_STEP_INDEX": "2",
    }


def test_a_job_token_when_given_is_the_only_credential_a_step_gets() -> None:
    env = step_environment(
        {"BUILDCONTROL_TOKEN": "agent-secret"},
        {},
        agent_id="a1",
        build_id="b1",
        job_id="j1",
        step_index=0,
        job_token="job-scoped",
    )
    assert env["BUILDCONTROL_JOB_TOKEN"] == "job-scoped"
    assert "agent-secret" not in env.values()
    assert env["PATH"]  # an agent started without PATH still gives steps one


def test_unreadable_job_records_are_dropped_not_fatal(tmp_path: Path) -> None:
    records = RunningJobRecords(tmp_path)
    records.write(JobRecord("b1", "j1", None, [123]))
    (tmp_path / ".running" / "broken.json").write_text("{not json")

    assert records.read_all() == [JobRecord("b1", "j1", None, [123])]
    assert not (tmp_path / ".running" / "broken.json").exists()


def test_an_unknown_step_user_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as raised:
        parse("agent", "--step-user", "no-such-user-here")

    assert raised.value.code == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="--step-user needs root")
def test_the_step_user_is_looked_up_by_name_or_uid() -> None:
    by_name = parse("agent", "--step-user", "nobody").step_user
    by_uid = parse("agent", "--step-user", str(by_name.uid)).step_user

    assert by_name == by_uid and by_name.name == "nobody"
    assert parse("agent").step_user is None and parse("agent").no_cgroups is False


def test_a_cgroup_that_cannot_be_made_leaves_the_job_in_process_groups(tmp_path: Path) -> None:
    host = ProcessHost(CgroupTree(tmp_path / "gone" / "agent"))

    processes = host.for_job("j1")

    assert processes.cgroup is None
    assert processes.launcher(["bash", "-c", "true"]) == ["bash", "-c", "true"]


async def test_a_stop_before_the_launcher_joins_the_cgroup_still_kills_the_step(
    job_id: str, cgroups: CgroupTree
) -> None:
    # The launcher is in the job's cgroup only once it has written itself into
    # cgroup.procs. Here it waits at a gate before doing so: the moment right after its
    # fork, made as long as the test needs. A kill then must reach it, else it joins
    # after the kill and the step runs on outside every stop.
    processes = ProcessHost(cgroups).for_job(job_id)
    launcher = processes.launcher(["sleep", "600", job_id])
    gate_read, gate_write = os.pipe()
    # The gate is the wrapper's stdin: a dup2 to fd 3 in preexec_fn is closed again by
    # close_fds (which runs after it), and dash reads only fds 0-9.
    process = await asyncio.create_subprocess_exec(
        "sh", "-c", 'read _ || exit 3; exec "$@" </dev/null', "sh", *launcher,
        stdin=gate_read, start_new_session=True,
    )  # fmt: skip
    os.close(gate_read)
    STEP_LEADERS.add(process.pid)
    processes.add_leader(process.pid)
    try:
        assert processes.members() == [process.pid]
        processes.kill()
        with contextlib.suppress(BrokenPipeError):  # no reader left: it is dead
            os.write(gate_write, b"go\n")  # were it alive, it would now join and exec
        assert await asyncio.wait_for(process.wait(), 20) == -signal.SIGKILL
        assert processes.members() == []
        assert marked_processes(job_id) == []
    finally:
        os.close(gate_write)
        STEP_LEADERS.discard(process.pid)
        processes.close()
