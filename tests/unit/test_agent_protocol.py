"""The agent against a scripted AgentService on 127.0.0.1 (not our server: a fake that
lets each test say exactly what the server sends and check what the agent answers)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from buildcontrol_client.agent import Agent, AgentOptions
from buildcontrol_client.agent_stream import AgentStream
from buildcontrol_client.backoff import BackoffPolicy
from buildcontrol_client.outbox import Outbox
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc, build_pb2
from google.protobuf import duration_pb2

BUILD_ID = "b00000000000000000001"


class FakeSession:
    """One Connect stream as the server sees it."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[agent_pb2.ConnectRequest | None] = asyncio.Queue()
        self.outgoing: asyncio.Queue[agent_pb2.ConnectResponse | None] = asyncio.Queue()
        self.metadata: dict[str, str] = {}

    async def expect(self, kind: str, seconds: float = 10.0) -> agent_pb2.ConnectRequest:
        """The agent's next message, which must be `kind` (heartbeats are skipped unless
        asked for)."""
        while True:
            message = await asyncio.wait_for(self.received.get(), seconds)
            assert message is not None, f"the stream ended while waiting for {kind}"
            event = message.WhichOneof("event")
            if event == "heartbeat" and kind != "heartbeat":
                continue
            assert event == kind, f"expected {kind}, got {message}"
            return message

    async def skip_to(self, kind: str, seconds: float = 10.0) -> agent_pb2.ConnectRequest:
        """The agent's next `kind` message; the ones before it are passed over."""
        while True:
            message = await asyncio.wait_for(self.received.get(), seconds)
            assert message is not None, f"the stream ended while waiting for {kind}"
            if message.WhichOneof("event") == kind:
                return message

    async def expect_any(self, seconds: float = 10.0) -> agent_pb2.ConnectRequest:
        """The agent's next message other than a heartbeat."""
        while True:
            message = await asyncio.wait_for(self.received.get(), seconds)
            assert message is not None, "the stream ended"
            if not message.HasField("heartbeat"):
                return message

    async def expect_end(self, seconds: float = 10.0) -> None:
        while True:
            message = await asyncio.wait_for(self.received.get(), seconds)
            if message is None:
                return
            assert message.HasField("heartbeat"), f"expected the end, got {message}"

    def welcome(self, heartbeat_seconds: int = 60) -> None:
        self.send(
            welcome=agent_pb2.Welcome(
                session_id="s1", heartbeat_interval=duration_pb2.Duration(seconds=heartbeat_seconds)
            )
        )

    def assign(self, job_id: str, *commands: str) -> None:
        steps = [agent_pb2.AssignedStep(index=i, command=c) for i, c in enumerate(commands)]
        self.send(assign_job=agent_pb2.AssignJob(build_id=BUILD_ID, job_id=job_id, steps=steps))

    def stop(self, job_id: str, grace_seconds: int) -> None:
        self.send(
            stop_job=agent_pb2.StopJob(
                build_id=BUILD_ID,
                job_id=job_id,
                reason="test",
                grace_period=duration_pb2.Duration(seconds=grace_seconds),
            )
        )

    def send(self, **event: Any) -> None:
        self.outgoing.put_nowait(agent_pb2.ConnectResponse(**event))

    def end(self) -> None:
        self.outgoing.put_nowait(None)


class FakeAgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self) -> None:
        self.sessions: asyncio.Queue[FakeSession] = asyncio.Queue()

    async def Connect(self, request_iterator: Any, context: Any) -> None:
        session = FakeSession()
        session.metadata = dict(context.invocation_metadata())
        self.sessions.put_nowait(session)

        async def pump() -> None:
            try:
                while (message := await context.read()) is not grpc.aio.EOF:
                    session.received.put_nowait(message)
            finally:
                session.received.put_nowait(None)
                session.end()  # like a real server: the agent's side is closed, so is ours

        reader = asyncio.create_task(pump())
        try:
            while (response := await session.outgoing.get()) is not None:
                await context.write(response)
        finally:
            reader.cancel()
            await asyncio.wait({reader})
            if not reader.cancelled():
                reader.exception()  # a broken stream; the test sees it as the end


class FakeServer:
    def __init__(self) -> None:
        self.service = FakeAgentService()
        self._server: Any = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.service, self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(0)

    async def next_session(self, seconds: float = 10.0) -> FakeSession:
        return await asyncio.wait_for(self.service.sessions.get(), seconds)


FAST = AgentOptions(
    backoff=BackoffPolicy(initial=0.02, maximum=0.1),
    shutdown_grace_seconds=2.0,
    welcome_timeout_seconds=2.0,
    goodbye_timeout_seconds=2.0,
)


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    await fake.start()
    yield fake
    await fake.stop()


@contextlib.asynccontextmanager
async def running_agent(port: int, options: AgentOptions = FAST) -> AsyncIterator[Agent]:
    agent = Agent(f"127.0.0.1:{port}", "a1", {"os": "linux"}, capacity=2, options=options)
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        agent.request_shutdown("test over")
        try:
            await asyncio.wait_for(asyncio.shield(task), 20)
        finally:
            task.cancel()
            await asyncio.wait({task})


@pytest.fixture
def job_ids() -> Iterator[list[str]]:
    """Unique job ids; their processes are killed after the test whatever happened."""
    ids = [f"job-{uuid.uuid4().hex}" for _ in range(3)]
    yield ids
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
        except OSError:
            continue
        if any(f"BUILDCONTROL_JOB_ID={job_id}".encode() in variables for job_id in ids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


async def test_hello_carries_identity_and_an_assigned_job_is_reported_step_by_step(
    server: FakeServer, job_ids: list[str]
) -> None:
    job = job_ids[0]
    async with running_agent(server.port):
        session = await server.next_session()
        hello = (await session.expect("hello")).hello
        assert (hello.agent_id, dict(hello.labels), hello.capacity) == ("a1", {"os": "linux"}, 2)
        assert list(hello.running_jobs) == []
        session.welcome()

        session.assign(job, "true", "exit 4")

        assert (await session.expect("job_accepted")).job_accepted.job_id == job
        assert (await session.expect("step_started")).step_started.step_index == 0
        assert (await session.expect("step_finished")).step_finished.exit_code == 0
        assert (await session.expect("step_started")).step_started.step_index == 1
        assert (await session.expect("step_finished")).step_finished.exit_code == 4
        finished = (await session.expect("job_finished")).job_finished
        assert (finished.job_id, finished.succeeded, finished.exit_code) == (job, False, 4)


async def test_stop_job_reports_graceful_and_repeated_stops_change_nothing(
    server: FakeServer, job_ids: list[str]
) -> None:
    job, next_job = job_ids[0], job_ids[1]
    async with running_agent(server.port):
        session = await server.next_session()
        await session.expect("hello")
        session.welcome()
        session.assign(job, "sleep 600")
        await session.expect("job_accepted")
        await session.expect("step_started")

        session.stop(job, grace_seconds=5)
        session.stop(job, grace_seconds=5)  # at-least-once delivery: duplicates happen

        stopped = (await session.expect("job_stopped")).job_stopped
        assert (stopped.job_id, stopped.outcome) == (job, build_pb2.JOB_OUTCOME_GRACEFUL)
        # A stop for a job that is over is a no-op: the next job's messages follow directly.
        session.stop(job, grace_seconds=0)
        session.assign(next_job, "true")
        assert (await session.expect("job_accepted")).job_accepted.job_id == next_job
        await session.expect("step_started")
        await session.expect("step_finished")
        assert (await session.expect("job_finished")).job_finished.job_id == next_job


async def test_the_agent_takes_stop_batches_and_stops_every_job_of_one(
    server: FakeServer, job_ids: list[str]
) -> None:
    first, second = job_ids[0], job_ids[1]
    async with running_agent(server.port):
        session = await server.next_session()
        hello = (await session.expect("hello")).hello
        assert agent_pb2.AGENT_FEATURE_STOP_BATCHES in hello.features
        session.welcome()
        for job in (first, second):
            session.assign(job, "sleep 600")
            await session.expect("job_accepted")
            await session.expect("step_started")
        stops = [
            agent_pb2.StopJob(
                build_id=BUILD_ID,
                job_id=job,
                reason="mass cancel",
                grace_period=duration_pb2.Duration(seconds=0),
            )
            for job in (first, second, first)  # a repeat inside a batch changes nothing
        ]
        session.send(stop_jobs=agent_pb2.StopJobs(stops=stops))
        stopped = [(await session.skip_to("job_stopped")).job_stopped for _ in range(2)]
        assert {s.job_id for s in stopped} == {first, second}
        assert {s.outcome for s in stopped} == {build_pb2.JOB_OUTCOME_KILLED}
        # Exactly one result each: up to the next job's end, no third JobStopped.
        session.assign(job_ids[2], "true")
        while (message := await session.expect_any()).WhichOneof("event") != "job_finished":
            assert not message.HasField("job_stopped"), message
        assert message.job_finished.job_id == job_ids[2]


@pytest.mark.parametrize("server_takes_batches", [True, False], ids=["batches", "base"])
async def test_results_queued_together_go_as_one_jobs_stopped_if_the_server_takes_them(
    server: FakeServer, server_takes_batches: bool
) -> None:
    outbox = Outbox()
    results = [
        agent_pb2.ConnectRequest(
            job_stopped=agent_pb2.JobStopped(build_id=BUILD_ID, job_id=f"j{n}", report_id=f"r{n}")
        )
        for n in range(3)
    ]
    for message in results:
        outbox.put(message)
    outbox.put(agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat()))
    written: list[agent_pb2.ConnectRequest] = []
    stream = AgentStream(f"127.0.0.1:{server.port}", outbox, lambda _: None, written.append, 60)
    opening = asyncio.ensure_future(stream.open(lambda: agent_pb2.Hello(agent_id="a1"), 10))
    session = await server.next_session()
    await session.expect("hello")
    features = [agent_pb2.AGENT_FEATURE_STOP_BATCHES] if server_takes_batches else []
    session.send(welcome=agent_pb2.Welcome(session_id="s1", features=features))
    await opening
    stream.start(heartbeat_seconds=60)
    try:
        if server_takes_batches:
            batch = (await session.expect("jobs_stopped")).jobs_stopped
            assert [s.report_id for s in batch.stopped] == ["r0", "r1", "r2"]
        else:
            for n in range(3):
                assert (await session.expect("job_stopped")).job_stopped.report_id == f"r{n}"
        await session.expect("heartbeat")  # the message after them, in its place
        # Each result counts as written on its own (the agent's result log tracks them).
        assert written[:3] == results
    finally:
        await stream.close()


async def test_after_the_server_restarts_hello_lists_running_jobs_and_missed_results(
    tmp_path: Path, job_ids: list[str]
) -> None:
    long_job, quick_job = job_ids[0], job_ids[1]
    release = tmp_path / "release"
    os.mkfifo(release)
    # Held open read-write by the test: the step's `read` then waits for our line only.
    release_fd = os.open(release, os.O_RDWR | os.O_NONBLOCK)
    first = FakeServer()
    await first.start()
    try:
        async with running_agent(first.port) as agent:
            session = await first.next_session()
            await session.expect("hello")
            session.welcome()
            session.assign(long_job, "sleep 600")
            session.assign(quick_job, f"read -r line < {release}")
            kinds = [(await session.expect_any()).WhichOneof("event") for _ in range(4)]
            assert sorted(kinds) == ["job_accepted"] * 2 + ["step_started"] * 2

            await first.stop()  # the server goes away; the agent keeps its jobs running
            os.write(release_fd, b"go\n")
            await asyncio.wait_for(agent.wait_for_job(quick_job), 10)  # ends while offline
            assert agent.running_job_ids == [long_job]

            second = FakeServer()
            await second.start(first.port)
            try:
                session = await second.next_session()
                hello = (await session.expect("hello")).hello
                assert [job.job_id for job in hello.running_jobs] == [long_job]
                assert [(r.job_id, r.succeeded) for r in hello.finished_jobs] == [(quick_job, True)]
                session.welcome()
                session.stop(long_job, grace_seconds=5)
                assert (await session.expect("job_stopped")).job_stopped.job_id == long_job
                agent.request_shutdown("test over")
                await session.expect("goodbye")
            finally:
                agent.request_shutdown("test over")
                await second.stop()
    finally:
        await first.stop()
        os.close(release_fd)


async def test_results_are_sent_again_in_every_hello_until_reports_committed_names_them(
    server: FakeServer, job_ids: list[str]
) -> None:
    job = job_ids[0]
    async with running_agent(server.port):
        session = await server.next_session()
        await session.expect("hello")
        session.welcome()
        session.assign(job, "true")
        await session.skip_to("job_finished")

        session.end()  # the stream drops; did the server keep the result? the agent can't know

        session = await server.next_session()
        hello = (await session.expect("hello")).hello
        assert [result.job_id for result in hello.finished_jobs] == [job]
        report_id = hello.finished_jobs[0].report_id
        assert report_id
        session.welcome()

        # A Welcome proves nothing (the server may fail to store the result after it):
        # the next Hello carries the result again, with the same id.
        session.end()
        session = await server.next_session()
        hello = (await session.expect("hello")).hello
        assert [result.report_id for result in hello.finished_jobs] == [report_id]
        session.welcome()
        session.send(reports_committed=agent_pb2.ReportsCommitted(report_ids=[report_id]))

        # Acknowledged (read before the end of the stream): the agent has forgotten it.
        session.end()
        session = await server.next_session()
        assert list((await session.expect("hello")).hello.finished_jobs) == []


async def test_drain_makes_the_agent_say_goodbye_and_come_back(server: FakeServer) -> None:
    async with running_agent(server.port):
        session = await server.next_session()
        await session.expect("hello")
        session.welcome()

        session.send(drain=agent_pb2.Drain(reason="restart"))

        assert (await session.expect("goodbye")).goodbye.reason == "drain"
        await session.expect_end()
        session.end()
        session = await server.next_session()
        await session.expect("hello")


async def test_shutdown_stops_own_jobs_reports_them_and_says_goodbye(
    server: FakeServer, job_ids: list[str]
) -> None:
    job = job_ids[0]
    agent = Agent(f"127.0.0.1:{server.port}", "a1", capacity=1, options=FAST)
    running = asyncio.create_task(agent.run())
    session = await server.next_session()
    await session.expect("hello")
    session.welcome()
    session.assign(job, "sleep 600")
    await session.skip_to("step_started")

    agent.request_shutdown("SIGTERM")

    finished = (await session.expect("job_finished")).job_finished
    assert (finished.job_id, finished.succeeded) == (job, False)
    assert (await session.expect("goodbye")).goodbye.reason == "SIGTERM"
    await session.expect_end()
    session.end()
    await asyncio.wait_for(running, 10)


async def test_heartbeats_follow_the_interval_from_welcome(server: FakeServer) -> None:
    async with running_agent(server.port):
        session = await server.next_session()
        await session.expect("hello")
        session.welcome(heartbeat_seconds=0)  # zero: the agent's own default applies
        session.end()

        session = await server.next_session()
        await session.expect("hello")
        session.send(
            welcome=agent_pb2.Welcome(heartbeat_interval=duration_pb2.Duration(nanos=20_000_000))
        )
        await session.expect("heartbeat", seconds=5)
        await session.expect("heartbeat", seconds=5)


async def test_a_server_that_never_welcomes_is_left_and_retried(server: FakeServer) -> None:
    options = AgentOptions(
        backoff=BackoffPolicy(initial=0.02, maximum=0.1), welcome_timeout_seconds=0.2
    )
    async with running_agent(server.port, options):
        silent = await server.next_session()
        await silent.expect("hello")

        await silent.expect_end()  # the agent gave up on this stream...
        session = await server.next_session()  # ...and tried again
        await session.expect("hello")
        silent.end()


async def test_the_agent_keeps_trying_until_the_server_is_up() -> None:
    with socket.socket() as probe:  # a port that is free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with running_agent(port):
        late = FakeServer()
        await late.start(port)
        try:
            session = await late.next_session()
            await session.expect("hello")
        finally:
            await late.stop()


# How the top-level CLI runs a client subcommand (cli/buildcontrol_cli/main.py).
CLI_MAIN = """
import argparse, asyncio, sys
from buildcontrol_client.cli import register
parser = argparse.ArgumentParser()
register(parser.add_subparsers(required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(asyncio.run(args.func(args)))
"""


async def test_agent_process_stops_its_jobs_and_exits_0_on_sigterm(
    server: FakeServer, job_ids: list[str]
) -> None:
    job = job_ids[0]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI_MAIN,
        "agent",
        "--server",
        f"127.0.0.1:{server.port}",
        "--agent-id",
        "a1",
        "--labels",
        "os=linux",
        "--capacity",
        "2",
        "--reconnect-max",
        "0.1",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        session = await server.next_session()
        hello = (await session.expect("hello")).hello
        assert (hello.agent_id, dict(hello.labels), hello.capacity) == ("a1", {"os": "linux"}, 2)
        session.welcome()
        session.assign(job, "sleep 600")
        await session.skip_to("step_started")

        process.send_signal(signal.SIGTERM)

        assert (await session.expect("job_finished")).job_finished.job_id == job
        assert (await session.expect("goodbye")).goodbye.reason == "SIGTERM"
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0
        log = stderr.decode()
        assert "connected to" in log
        assert f"job {job}" in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_stop_job_fields_drive_cleanup_and_a_forced_repeat_escalates(
    server: FakeServer, job_ids: list[str], tmp_path: Path
) -> None:
    job = job_ids[0]
    go = tmp_path / "go"
    os.mkfifo(go)
    # Held open read-write by the test, so the cleanup step's `read` waits for us alone.
    go_fd = os.open(go, os.O_RDWR | os.O_NONBLOCK)
    try:
        async with running_agent(server.port):
            session = await server.next_session()
            await session.expect("hello")
            session.welcome()
            steps = [
                agent_pb2.AssignedStep(index=0, command="sleep 600"),
                agent_pb2.AssignedStep(index=1, command=f"read -r line < {go}", run_on_cancel=True),
                agent_pb2.AssignedStep(index=2, command="true", run_on_cancel=True),
            ]
            session.send(assign_job=agent_pb2.AssignJob(build_id=BUILD_ID, job_id=job, steps=steps))
            await session.expect("job_accepted")
            assert (await session.expect("step_started")).step_started.step_index == 0

            stop = agent_pb2.StopJob(
                build_id=BUILD_ID,
                job_id=job,
                grace_period=duration_pb2.Duration(seconds=5),
                cleanup_timeout=duration_pb2.Duration(seconds=600),
            )
            session.send(stop_job=stop)
            # The main step was stopped; the first cleanup step runs (and waits on `go`).
            assert (await session.expect("step_started")).step_started.step_index == 1
            session.send(stop_job=stop)  # a plain repeat: nothing changes
            forced = agent_pb2.StopJob()
            forced.CopyFrom(stop)
            forced.skip_cleanup = True
            session.send(stop_job=forced)  # escalation: the cleanup step is killed

            finished = (await session.expect("step_finished")).step_finished
            assert (finished.step_index, finished.exit_code) == (1, 128 + signal.SIGKILL)
            stopped = (await session.expect("job_stopped")).job_stopped
            assert stopped.outcome == build_pb2.JOB_OUTCOME_KILLED
    finally:
        os.close(go_fd)


async def test_an_agent_token_goes_with_every_connect(server: FakeServer) -> None:
    options = dataclasses.replace(FAST, token="bct_agent")
    async with running_agent(server.port, options):
        session = await server.next_session()
        assert session.metadata["authorization"] == "Bearer bct_agent"
        await session.expect("hello")
        session.end()  # dropped: the next attempt carries the token too
        again = await server.next_session()
        assert again.metadata["authorization"] == "Bearer bct_agent"
