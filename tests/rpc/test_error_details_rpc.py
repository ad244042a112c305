"""Every error carries google.rpc.Status details a program can read: an ErrorInfo with
a stable reason, a FieldViolation for invalid input, a PreconditionFailure for a cancel
of a finished build, a ResourceInfo for a build that does not exist; the Python client
exposes them, and docs/errors.md lists every reason."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.errors import FailedPrecondition, InvalidArgument, NotFound
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.domain.errors import Reason
from google.rpc import error_details_pb2, status_pb2

from tests.support.agent_peer import AgentPeer
from tests.support.pipelines import pipeline
from tests.support.servers import Running

ERRORS_DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
MISSING = "b00000000000000000000"


def status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    assert isinstance(raw, bytes)
    return status_pb2.Status.FromString(raw)


def unpacked(status: status_pb2.Status, kind: type) -> list[object]:
    found = []
    for packed in status.details:
        if packed.Is(kind.DESCRIPTOR):
            message = kind()
            packed.Unpack(message)
            found.append(message)
    return found


async def test_not_found_names_the_build_as_a_resource(server: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await server.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=MISSING))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    status = status_of(raised.value)
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    (info,) = unpacked(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("BUILD_NOT_FOUND", "buildcontrol.v1")
    (resource,) = unpacked(status, error_details_pb2.ResourceInfo)
    assert (resource.resource_type, resource.resource_name) == ("buildcontrol.v1.Build", MISSING)


async def test_invalid_input_names_the_field_in_a_field_violation(server: Running) -> None:
    request = pipeline()
    request.stages[0].jobs[0].ClearField("steps")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await server.stub.SubmitBuild(request)
    status = status_of(raised.value)
    (info,) = unpacked(status, error_details_pb2.ErrorInfo)
    assert info.reason == "INVALID_FIELD"
    (bad,) = unpacked(status, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["stages[0].jobs[0].steps"]
    assert await server.app.store.list_builds(10) == []


async def test_the_python_client_exposes_reason_violations_and_preconditions(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    async with BuildControlClient(server.target) as client:
        with pytest.raises(NotFound) as missing:
            await client.get(MISSING)
        assert missing.value.reason == "BUILD_NOT_FOUND"
        assert missing.value.error_details.resource == ("buildcontrol.v1.Build", MISSING)

        bad = pipeline()
        bad.stages[0].jobs[0].ClearField("steps")
        with pytest.raises(InvalidArgument) as invalid:
            await client.submit(bad)
        assert invalid.value.error_details.field_violations[0][0] == "stages[0].jobs[0].steps"

        build = await client.submit(pipeline(command="true"))
        job = await agent.take_job()
        agent.finished(build.build_id, job.job_id)
        async for _ in client.watch(build.build_id):
            pass  # the watch ends once the build is terminal
        assert (await client.get(build.build_id)).status == build_pb2.BUILD_STATUS_SUCCEEDED
        with pytest.raises(FailedPrecondition) as finished:
            await client.cancel_and_wait(build.build_id, reason="too late")
        assert finished.value.reason == "BUILD_ALREADY_FINISHED"
        ((kind, subject, _),) = finished.value.error_details.precondition_violations
        assert (kind, subject) == ("BUILD_STATUS", build.build_id)
    await agent.leave()


def test_docs_list_every_reason() -> None:
    text = ERRORS_DOC.read_text()
    missing = [reason.value for reason in Reason if f"`{reason.value}`" not in text]
    assert missing == [], f"docs/errors.md does not list: {missing}"
