"""Every limit at its bound (accepted) and just past it (refused with a status and a
message naming what was wrong, and nothing stored). The bounds are shrunk through the
same Settings the serve flags fill, so each case is a few bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc, build_control_pb2
from buildcontrol_server.domain.submission import Limits

from tests.support.secure_servers import SecureServer, pipeline, secure_server

LIMITS = Limits(
    max_stages=3,
    max_jobs=4,
    max_steps=6,
    max_name_length=10,
    max_command_length=20,
    max_env_vars=2,
    max_env_value_length=5,
    max_labels=2,
    max_reason_length=8,
)
MAX_MESSAGE_BYTES = 16 * 1024


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[SecureServer]:
    async with secure_server(
        tmp_path,
        limits=LIMITS,
        max_message_bytes=MAX_MESSAGE_BYTES,
        hello_timeout=0.3,
        max_agent_streams=2,
    ) as server:
        yield server


def spec(stages: int = 1, jobs: int = 1, steps: int = 1) -> build_control_pb2.SubmitBuildRequest:
    """`jobs` and `steps` per stage and per job."""
    return build_control_pb2.SubmitBuildRequest(
        pipeline="p",
        stages=[
            build_control_pb2.StageSpec(
                name=f"s{s}",
                jobs=[
                    build_control_pb2.JobSpec(
                        name=f"j{j}",
                        steps=[build_control_pb2.StepSpec(command="true") for _ in range(steps)],
                    )
                    for j in range(jobs)
                ],
            )
            for s in range(stages)
        ],
    )


def with_job(**fields: object) -> Callable[[int], build_control_pb2.SubmitBuildRequest]:
    """A one-job build whose job gets `fields(n)`; n is the size under test."""

    def make(n: int) -> build_control_pb2.SubmitBuildRequest:
        request = spec()
        job = request.stages[0].jobs[0]
        for name, value in fields.items():
            made = value(n)  # type: ignore[operator]
            if name == "command":
                job.steps[0].command = made
            else:
                getattr(job, name).update(made)
        return request

    return make


def steps_in_two_jobs(n: int) -> build_control_pb2.SubmitBuildRequest:
    """n steps in all, split over two jobs: the bound is per build, not per job."""
    request = spec(jobs=2, steps=n - n // 2)
    del request.stages[0].jobs[1].steps[n // 2 :]
    return request


def named(n: int) -> build_control_pb2.SubmitBuildRequest:
    request = spec()
    request.pipeline = "p" * n
    return request


# (what, bound, request of size n, field the refusal names)
SUBMISSIONS = [
    ("stages", LIMITS.max_stages, lambda n: spec(stages=n), "stages"),
    ("jobs per build", LIMITS.max_jobs, lambda n: jobs_in_two_stages(n), "jobs"),
    ("steps per build", LIMITS.max_steps, lambda n: steps_in_two_jobs(n), "steps"),
    ("name length", LIMITS.max_name_length, named, "pipeline"),
    ("command length", LIMITS.max_command_length, with_job(command=lambda n: "x" * n), "command"),
    ("env variables", LIMITS.max_env_vars,
     with_job(env=lambda n: {f"V{i}": "1" for i in range(n)}), "env"),
    ("env value length", LIMITS.max_env_value_length,
     with_job(env=lambda n: {"V": "v" * n}), "env"),
    ("labels", LIMITS.max_labels,
     with_job(labels=lambda n: {f"k{i}": "v" for i in range(n)}), "labels"),
    ("label length", LIMITS.max_name_length,
     with_job(labels=lambda n: {"k": "v" * n}), "labels"),
]  # fmt: skip


def jobs_in_two_stages(n: int) -> build_control_pb2.SubmitBuildRequest:
    """n jobs in all, split over two stages: the bound is per build, not per stage."""
    request = spec(stages=2, jobs=n - n // 2)
    del request.stages[1].jobs[n // 2 :]
    return request


async def stored_count(server: SecureServer) -> int:
    return len(await server.app.store.list_builds(100, None, None))


@pytest.mark.parametrize(
    ("what", "bound", "make", "field"), SUBMISSIONS, ids=[s[0] for s in SUBMISSIONS]
)
async def test_submission_limit_at_and_just_past_its_bound(
    limited: SecureServer,
    what: str,
    bound: int,
    make: Callable[[int], build_control_pb2.SubmitBuildRequest],
    field: str,
) -> None:
    at = await limited.submit("alice", request=make(bound))
    assert at.build_id, what
    before = await stored_count(limited)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await limited.submit("alice", request=make(bound + 1))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, what
    details = refused.value.details() or ""
    assert field in details and str(bound) in details, details
    assert await stored_count(limited) == before


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (build_control_pb2.JobSpec(name="j", steps=[build_control_pb2.StepSpec(command="a\0b")]),
         "command"),
        (build_control_pb2.JobSpec(name="j", env={"A=B": "1"},
                                   steps=[build_control_pb2.StepSpec(command="true")]), "env"),
        (build_control_pb2.JobSpec(name="j", env={"A": "x\0"},
                                   steps=[build_control_pb2.StepSpec(command="true")]), "env"),
    ],
)  # fmt: skip
async def test_what_the_agent_could_not_exec_is_refused_at_submission(
    limited: SecureServer, job: build_control_pb2.JobSpec, field: str
) -> None:
    request = build_control_pb2.SubmitBuildRequest(
        pipeline="p", stages=[build_control_pb2.StageSpec(name="s", jobs=[job])]
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await limited.submit("alice", request=request)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in (refused.value.details() or "")
    assert await stored_count(limited) == 0


async def test_cancel_reason_at_and_just_past_its_bound(limited: SecureServer) -> None:
    build = await limited.submit("alice", request=spec())
    before = await limited.snapshot(build.build_id)
    request = build_control_pb2.CancelRequest(build_id=build.build_id, reason="r" * 9)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in limited.stub.Cancel(request, metadata=limited.auth("alice"), timeout=5):
            pass
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in (refused.value.details() or "")
    assert await limited.snapshot(build.build_id) == before
    request.reason = "r" * 8
    messages = [m async for m in limited.stub.Cancel(request, metadata=limited.auth("alice"))]
    assert messages[-1].finished.cancel.reason == "r" * 8


async def test_message_size_at_and_just_past_its_bound(tmp_path: Path) -> None:
    async with secure_server(tmp_path, max_message_bytes=MAX_MESSAGE_BYTES) as server:
        request = pipeline(command="x")
        padding = MAX_MESSAGE_BYTES - request.ByteSize()
        request.stages[0].jobs[0].steps[0].command = "x" * (1 + padding)
        # The length prefix grows by a byte or two with the command: trim to fit exactly.
        while request.ByteSize() > MAX_MESSAGE_BYTES:
            request.stages[0].jobs[0].steps[0].command = (
                request.stages[0].jobs[0].steps[0].command[1:]
            )
        assert request.ByteSize() == MAX_MESSAGE_BYTES
        assert (await server.submit("alice", request=request)).build_id
        request.stages[0].jobs[0].steps[0].command += "x"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await server.submit("alice", request=request)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (refused.value.details() or "")
        assert await stored_count(server) == 1


async def test_hello_must_come_first_and_within_the_hello_timeout(limited: SecureServer) -> None:
    prompt = limited.agent("agent-a")
    await prompt.connect()  # a Hello at once is welcomed
    await prompt.leave()

    stub = agent_pb2_grpc.AgentServiceStub(limited.channel)
    silent = stub.Connect(metadata=limited.auth("agent-a"), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await silent.read()
    assert ended.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "hello" in (ended.value.details() or "") and "0.3" in (ended.value.details() or "")

    wrong_first = stub.Connect(metadata=limited.auth("agent-a"), timeout=10)
    await wrong_first.write(agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat()))
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await wrong_first.read()
    assert ended.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "hello" in (ended.value.details() or "")
    assert limited.app.hub.sessions() == []


async def test_a_hello_breaking_limits_is_refused_before_any_session(
    limited: SecureServer,
) -> None:
    agent = limited.agent("agent-a")
    labels = {f"k{i}": "v" for i in range(LIMITS.max_labels + 1)}
    code, details = await agent.refused(
        agent_pb2.Hello(agent_id="agent-a", capacity=1, labels=labels)
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "hello.labels" in details
    assert limited.app.hub.sessions() == []


async def test_a_hello_with_a_nul_in_a_label_is_refused_before_any_session(
    limited: SecureServer,
) -> None:
    for labels, field in (
        ({"os": "a\x00b"}, "hello.labels['os']"),
        ({"a\x00b": "v"}, "hello.labels key"),
    ):
        code, details = await limited.agent("agent-a").refused(
            agent_pb2.Hello(agent_id="agent-a", capacity=1, labels=labels)
        )
        assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, f"{field}: contains NUL")
    assert limited.app.hub.sessions() == []


async def test_open_agent_streams_at_and_just_past_their_bound(limited: SecureServer) -> None:
    first, second = limited.agent("agent-a"), limited.agent("agent-b")
    await first.connect()
    await second.connect()
    # A third stream (even agent-a reconnecting) is refused while two are open.
    code, details = await limited.agent("agent-a").refused()
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and "agent streams" in details
    assert not first.closed.is_set() and not second.closed.is_set()
    await second.leave()
    third = limited.agent("agent-b")
    await third.connect()  # a slot is free again
    await third.leave()
    await first.leave()
