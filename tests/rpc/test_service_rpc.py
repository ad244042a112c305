"""Submit, get, list, watch, reflection and health over a real server."""

from __future__ import annotations

import importlib.util

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import rest_of
from tests.support.pipelines import pipeline
from tests.support.servers import Running


async def test_reflection_lists_our_services_and_health_answers_serving(server: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert {
        "buildcontrol.v1.BuildControl",
        "buildcontrol.v1.AgentService",
        "grpc.health.v1.Health",
    } <= names
    health = health_pb2_grpc.HealthStub(server.channel)
    for service in ("", "buildcontrol.v1.BuildControl"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_submit_then_get_returns_the_queued_build(server: Running) -> None:
    submitted = (await server.stub.SubmitBuild(pipeline(jobs=2, stages=2))).build
    assert submitted.status == build_pb2.BUILD_STATUS_QUEUED
    got = (
        await server.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=submitted.build_id))
    ).build
    assert got == submitted
    assert [len(s.jobs) for s in got.stages] == [2, 2]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "pipeline", ""), "pipeline"),
        (lambda r: r.ClearField("stages"), "stages"),
        (
            lambda r: r.stages[0].jobs[0].steps[0].ClearField("command"),
            "stages[0].jobs[0].steps[0].command",
        ),
        (lambda r: r.stages[0].jobs.add().CopyFrom(r.stages[0].jobs[0]), "stages[0].jobs[1].name"),
        (lambda r: r.stages[0].jobs[0].ClearField("steps"), "stages[0].jobs[0].steps"),
    ],
)
async def test_an_invalid_pipeline_names_the_field_and_stores_nothing(
    server: Running, mutate: object, field: str
) -> None:
    request = pipeline()
    mutate(request)  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await server.stub.SubmitBuild(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(field + ":")
    assert await server.app.store.list_builds(10) == []


async def test_list_builds_pages_newest_first(server: Running) -> None:
    ids = [(await server.stub.SubmitBuild(pipeline())).build.build_id for _ in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await server.stub.ListBuilds(
            build_control_pb2.ListBuildsRequest(page_size=2, page_token=token)
        )
        assert len(page.builds) <= 2
        assert all(not b.stages for b in page.builds)
        seen += [b.build_id for b in page.builds]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(ids, reverse=True)


async def test_a_forged_page_token_is_invalid_argument(server: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await server.stub.ListBuilds(build_control_pb2.ListBuildsRequest(page_token="!!nope"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (raised.value.details() or "")


async def test_watch_sends_a_snapshot_then_every_change_until_terminal(server: Running) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    build = (await server.stub.SubmitBuild(pipeline())).build
    job = await agent.take_job()
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build.build_id), timeout=10
    )
    first = await watch.read()
    assert first.WhichOneof("event") == "snapshot"
    agent.send(step_finished={"build_id": build.build_id, "job_id": job.job_id, "exit_code": 0})
    agent.finished(build.build_id, job.job_id)
    rest = await rest_of(watch)
    kinds = [m.WhichOneof("event") for m in rest]
    assert "step_changed" in kinds and "job_changed" in kinds
    assert rest[-1].build_changed.status == build_pb2.BUILD_STATUS_SUCCEEDED
    await agent.leave()


async def test_a_stream_that_does_not_start_with_hello_is_refused(server: Running) -> None:
    from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc

    stub = agent_pb2_grpc.AgentServiceStub(server.channel)
    call = stub.Connect(iter([agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat())]))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "hello" in (raised.value.details() or "")


async def test_an_agent_cannot_report_on_another_agents_job(server: Running) -> None:
    owner = AgentPeer(server.target, "a1", capacity=1)
    await owner.connect()
    build = (await server.stub.SubmitBuild(pipeline())).build
    job = await owner.take_job()
    intruder = AgentPeer(server.target, "a2")
    await intruder.connect()
    intruder.finished(build.build_id, job.job_id)
    await intruder.closed.wait()
    assert intruder.status == grpc.StatusCode.PERMISSION_DENIED
    got = (
        await server.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build.build_id))
    ).build
    assert got.stages[0].jobs[0].status == build_pb2.JOB_STATUS_RUNNING
    await owner.leave()


async def test_a_second_connect_of_one_agent_replaces_the_first(server: Running) -> None:
    first = AgentPeer(server.target, "a1")
    await first.connect()
    second = AgentPeer(server.target, "a1")
    await second.connect()
    await first.closed.wait()
    assert first.status == grpc.StatusCode.ABORTED
    assert [s.agent_id for s in server.app.hub.sessions()] == ["a1"]
    await second.leave()


async def test_reflection_v1_is_unimplemented_so_clients_fall_back_to_v1alpha(
    server: Running,
) -> None:
    # grpcio-reflection (1.85) has no v1 servicer; v1's messages are v1alpha's, so a raw
    # call with v1alpha's codec asks exactly what grpcurl and buf curl ask first.
    call = server.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        [r async for r in call(iter([request]))]
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_reflection_v1alpha_describes_a_service_from_its_name(server: Running) -> None:
    # What `grpcurl describe` and `buf curl` do after listing: fetch the file of a symbol.
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="buildcontrol.v1.BuildControl"
    )
    responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
    files = responses[0].file_descriptor_response.file_descriptor_proto
    described = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
    services = {service.name for file in described for service in file.service}
    assert "BuildControl" in services


def test_grpcio_reflection_still_offers_v1alpha_only() -> None:
    # When this fails, grpcio-reflection has a v1 servicer: serve it beside v1alpha
    # (app.py) and update the reflection note in docs/operations.md.
    assert importlib.util.find_spec("grpc_reflection.v1alpha") is not None
    assert importlib.util.find_spec("grpc_reflection.v1") is None
