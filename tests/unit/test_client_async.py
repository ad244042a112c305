"""The async client against a scripted BuildControl servicer on a real grpc.aio server
(grpcio-testing cannot run async servicers). The servicer is a fake, not our server: it
answers with whatever each test sets, including aborts with each status code."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc
import pytest
from buildcontrol_client import errors
from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.pipeline_file import PipelineFileError
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

BUILD_ID = "b00000000000000000001"


class FakeBuildControl(build_control_pb2_grpc.BuildControlServicer):
    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Any] = []
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.builds: list[build_pb2.Build] = []
        self.next_page_token = ""
        self.watch_events: list[build_control_pb2.WatchBuildResponse] = []
        self.cancel_events: list[build_control_pb2.CancelResponse] = []
        self.cancel_builds_events: list[build_control_pb2.CancelBuildsResponse] = []
        self.agents: list[build_control_pb2.Agent] = []

    async def _answer(self, request: Any, context: Any) -> None:
        self.requests.append(request)
        if self.abort is not None:
            await context.abort(*self.abort)

    async def SubmitBuild(self, request: Any, context: Any) -> Any:
        await self._answer(request, context)
        build = build_pb2.Build(
            build_id=BUILD_ID, pipeline=request.pipeline, status=build_pb2.BUILD_STATUS_QUEUED
        )
        return build_control_pb2.SubmitBuildResponse(build=build)

    async def GetBuild(self, request: Any, context: Any) -> Any:
        await self._answer(request, context)
        build = build_pb2.Build(build_id=request.build_id, status=build_pb2.BUILD_STATUS_RUNNING)
        return build_control_pb2.GetBuildResponse(build=build)

    async def ListBuilds(self, request: Any, context: Any) -> Any:
        await self._answer(request, context)
        return build_control_pb2.ListBuildsResponse(
            builds=self.builds, next_page_token=self.next_page_token
        )

    async def WatchBuild(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.requests.append(request)
        for event in self.watch_events:
            yield event
        if self.abort is not None:
            await context.abort(*self.abort)

    async def Cancel(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.requests.append(request)
        for event in self.cancel_events:
            yield event
        if self.abort is not None:
            await context.abort(*self.abort)

    async def CancelBuilds(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.requests.append(request)
        for event in self.cancel_builds_events:
            yield event
        if self.abort is not None:
            await context.abort(*self.abort)

    async def ListAgents(self, request: Any, context: Any) -> Any:
        await self._answer(request, context)
        return build_control_pb2.ListAgentsResponse(agents=self.agents)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBuildControl]:
    servicer = FakeBuildControl()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    build_control_pb2_grpc.add_BuildControlServicer_to_server(servicer, server)
    servicer.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer
    await server.stop(0)


@pytest.fixture
async def client(fake: FakeBuildControl) -> AsyncIterator[BuildControlClient]:
    async with BuildControlClient(f"127.0.0.1:{fake.port}", timeout=10) as connected:
        yield connected


def finished_event() -> build_control_pb2.CancelResponse:
    return build_control_pb2.CancelResponse(
        finished=build_control_pb2.CancelFinished(
            build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_CANCELED
        )
    )


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
    ],
)
async def test_each_status_code_becomes_its_typed_error(
    fake: FakeBuildControl,
    client: BuildControlClient,
    code: grpc.StatusCode,
    error_type: type[errors.BuildControlError],
) -> None:
    fake.abort = (code, "build_id: not a build id")

    with pytest.raises(error_type) as raised:
        await client.get("nope")

    assert raised.value.code == code
    assert raised.value.details == "build_id: not a build id"
    assert isinstance(raised.value, errors.BuildControlError)


async def test_an_unmapped_code_is_the_base_error(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    fake.abort = (grpc.StatusCode.INTERNAL, "boom")

    with pytest.raises(errors.BuildControlError) as raised:
        await client.get(BUILD_ID)

    assert type(raised.value) is errors.BuildControlError
    assert raised.value.code == grpc.StatusCode.INTERNAL


async def test_submit_turns_a_pipeline_document_into_the_request(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    document = {
        "pipeline": "hello",
        "stages": [{"name": "s", "jobs": [{"name": "j", "steps": ["true"]}]}],
    }

    build = await client.submit(document)

    assert (build.build_id, build.pipeline, build.status) == (
        BUILD_ID,
        "hello",
        build_pb2.BUILD_STATUS_QUEUED,
    )
    assert fake.requests[0].stages[0].jobs[0].steps[0].command == "true"


async def test_submit_checks_a_document_before_calling(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    with pytest.raises(PipelineFileError, match="stages"):
        await client.submit({"pipeline": "hello"})

    assert fake.requests == []


async def test_list_returns_the_page_and_the_next_token(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    fake.builds = [build_pb2.Build(build_id=BUILD_ID)]
    fake.next_page_token = "t2"

    builds, token = await client.list(page_size=1, page_token="t1", pipeline="hello")

    assert [b.build_id for b in builds] == [BUILD_ID]
    assert token == "t2"
    assert fake.requests[0] == build_control_pb2.ListBuildsRequest(
        page_size=1, page_token="t1", pipeline="hello"
    )


async def test_watch_yields_events_and_then_raises_the_stream_error(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    fake.watch_events = [
        build_control_pb2.WatchBuildResponse(snapshot=build_pb2.Build(build_id=BUILD_ID))
    ]
    fake.abort = (grpc.StatusCode.UNAVAILABLE, "shutting down")
    seen = []

    with pytest.raises(errors.Unavailable, match="shutting down"):
        async for event in client.watch(BUILD_ID):
            seen.append(event)

    assert [event.snapshot.build_id for event in seen] == [BUILD_ID]


async def test_cancel_sends_the_options_and_streams_each_event(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    fake.cancel_events = [
        build_control_pb2.CancelResponse(
            accepted=build_control_pb2.CancelAccepted(build_id=BUILD_ID, jobs_stopping=1)
        ),
        finished_event(),
    ]

    async with aclosing(
        client.cancel(BUILD_ID, "not needed", grace_period_seconds=2.5, requested_by="me")
    ) as events:
        kinds = [event.WhichOneof("event") async for event in events]

    assert kinds == ["accepted", "finished"]
    request = fake.requests[0]
    assert (request.reason, request.force, request.requested_by) == ("not needed", False, "me")
    assert request.grace_period.ToTimedelta().total_seconds() == 2.5


async def test_cancel_without_grace_leaves_it_to_the_server(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    fake.cancel_events = [finished_event()]

    await client.cancel_and_wait(BUILD_ID, force=True)

    assert not fake.requests[0].HasField("grace_period")
    assert fake.requests[0].force is True


async def test_cancel_and_wait_returns_the_finished_message(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    fake.cancel_events = [
        build_control_pb2.CancelResponse(
            job_stopped=build_control_pb2.JobCancelResult(build_id=BUILD_ID, job_id="j")
        ),
        finished_event(),
    ]

    finished = await client.cancel_and_wait(BUILD_ID)

    assert finished.status == build_pb2.BUILD_STATUS_CANCELED


async def test_cancel_and_wait_fails_when_the_stream_ends_early(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    fake.cancel_events = [
        build_control_pb2.CancelResponse(accepted=build_control_pb2.CancelAccepted())
    ]

    with pytest.raises(errors.StreamEndedEarly):
        await client.cancel_and_wait(BUILD_ID)


async def test_cancel_and_wait_raises_the_typed_error(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    fake.abort = (grpc.StatusCode.FAILED_PRECONDITION, "build SUCCEEDED")

    with pytest.raises(errors.FailedPrecondition, match="build SUCCEEDED"):
        await client.cancel_and_wait(BUILD_ID)


async def test_a_server_that_is_not_there_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

        async with BuildControlClient(f"127.0.0.1:{port}", timeout=10) as client:
            with pytest.raises(errors.Unavailable):
                await client.get(BUILD_ID)


def batch_events() -> list[build_control_pb2.CancelBuildsResponse]:
    finished = build_control_pb2.CancelFinished(
        build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_CANCELED
    )
    summary = build_control_pb2.CancelBuildsSummary(matched=1, canceled=1)
    return [
        build_control_pb2.CancelBuildsResponse(build=finished),
        build_control_pb2.CancelBuildsResponse(summary=summary),
    ]


@pytest.mark.parametrize(
    ("selector", "field"),
    [
        ({"build_ids": [BUILD_ID]}, "ids"),
        ({"pipeline": "deploy"}, "pipeline"),
        ({"concurrency_group": "deploy-main"}, "concurrency_group"),
    ],
)
async def test_cancel_builds_sends_one_selector_and_streams_builds_then_the_summary(
    fake: FakeBuildControl, client: BuildControlClient, selector: dict[str, Any], field: str
) -> None:
    fake.cancel_builds_events = batch_events()

    async with aclosing(
        client.cancel_builds(**selector, reason="release", force=True, grace_period_seconds=1)
    ) as events:
        kinds = [event.WhichOneof("event") async for event in events]

    assert kinds == ["build", "summary"]
    request = fake.requests[0]
    assert request.WhichOneof("selector") == field
    assert (request.reason, request.force) == ("release", True)
    assert request.grace_period.ToTimedelta().total_seconds() == 1


@pytest.mark.parametrize(
    "selector",
    [{}, {"build_ids": [BUILD_ID], "pipeline": "p"}, {"pipeline": "p", "concurrency_group": "g"}],
)
async def test_cancel_builds_needs_exactly_one_selector(
    fake: FakeBuildControl, client: BuildControlClient, selector: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        async with aclosing(client.cancel_builds(**selector)) as events:
            async for _ in events:
                pass

    assert fake.requests == []


async def test_cancel_builds_raises_the_typed_error(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    fake.abort = (grpc.StatusCode.INVALID_ARGUMENT, "selector: give ids")

    with pytest.raises(errors.InvalidArgument, match="selector"):
        async with aclosing(client.cancel_builds(pipeline="p")) as events:
            async for _ in events:
                pass


async def test_list_agents_returns_every_agent(
    fake: FakeBuildControl, client: BuildControlClient
) -> None:
    fake.agents = [
        build_control_pb2.Agent(agent_id="a1", capacity=2, connected=True, job_ids=["j1"]),
        build_control_pb2.Agent(agent_id="a2", capacity=1, suspect=True),
    ]

    agents = await client.list_agents()

    assert [(agent.agent_id, agent.connected) for agent in agents] == [("a1", True), ("a2", False)]
