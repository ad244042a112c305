"""The blocking client against grpc_testing's scripted channel (which does work for sync
client code), and the one mapping from gRPC failures to typed errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import grpc_testing
import pytest
from buildcontrol_client import errors
from buildcontrol_client.sync_client import SyncBuildControlClient
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

SERVICE = build_control_pb2.DESCRIPTOR.services_by_name["BuildControl"]
BUILD_ID = "b00000000000000000001"


@pytest.fixture
def channel() -> grpc_testing.Channel:
    return grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    # The client blocks on its call while the test plays the server: one thread for it.
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def test_get_returns_the_build(channel: grpc_testing.Channel, pool: ThreadPoolExecutor) -> None:
    client = SyncBuildControlClient("unused", channel=channel)
    answer = pool.submit(client.get, BUILD_ID)

    _, request, rpc = channel.take_unary_unary(SERVICE.methods_by_name["GetBuild"])
    build = build_pb2.Build(build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_RUNNING)
    rpc.terminate(build_control_pb2.GetBuildResponse(build=build), (), grpc.StatusCode.OK, "")

    assert request.build_id == BUILD_ID
    assert answer.result(timeout=10) == build


def test_a_failed_call_raises_the_typed_error(
    channel: grpc_testing.Channel, pool: ThreadPoolExecutor
) -> None:
    client = SyncBuildControlClient("unused", channel=channel)
    answer = pool.submit(client.get, BUILD_ID)

    _, _, rpc = channel.take_unary_unary(SERVICE.methods_by_name["GetBuild"])
    rpc.terminate(
        build_control_pb2.GetBuildResponse(), (), grpc.StatusCode.NOT_FOUND, "no such build"
    )

    with pytest.raises(errors.NotFound) as raised:
        answer.result(timeout=10)
    assert raised.value.details == "no such build"


def test_cancel_and_wait_reads_the_stream_to_its_last_message(
    channel: grpc_testing.Channel, pool: ThreadPoolExecutor
) -> None:
    client = SyncBuildControlClient("unused", channel=channel)
    answer = pool.submit(client.cancel_and_wait, BUILD_ID, "why", False, 1.0, "me")

    _, request, rpc = channel.take_unary_stream(SERVICE.methods_by_name["Cancel"])
    rpc.send_response(build_control_pb2.CancelResponse(accepted=build_control_pb2.CancelAccepted()))
    rpc.send_response(
        build_control_pb2.CancelResponse(
            finished=build_control_pb2.CancelFinished(
                build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_CANCELED
            )
        )
    )
    rpc.terminate((), grpc.StatusCode.OK, "")

    assert answer.result(timeout=10).status == build_pb2.BUILD_STATUS_CANCELED
    assert (request.reason, request.requested_by) == ("why", "me")
    assert request.grace_period.ToTimedelta().total_seconds() == 1.0


def test_watch_raises_the_typed_error_after_the_events(
    channel: grpc_testing.Channel, pool: ThreadPoolExecutor
) -> None:
    client = SyncBuildControlClient("unused", channel=channel)
    seen: list[build_control_pb2.WatchBuildResponse] = []
    first_seen = threading.Event()

    def watch_all() -> None:
        for event in client.watch(BUILD_ID):
            seen.append(event)
            first_seen.set()

    answer = pool.submit(watch_all)
    _, _, rpc = channel.take_unary_stream(SERVICE.methods_by_name["WatchBuild"])
    rpc.send_response(
        build_control_pb2.WatchBuildResponse(snapshot=build_pb2.Build(build_id=BUILD_ID))
    )
    # grpc_testing drops unread responses on an error status: let the client read first.
    assert first_seen.wait(timeout=10)
    rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "going away")

    with pytest.raises(errors.Unavailable, match="going away"):
        answer.result(timeout=10)
    assert len(seen) == 1


class FailedCall(grpc.RpcError):
    """What grpc raises for a failed call: an RpcError that also has code() and details()."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (grpc.StatusCode.INTERNAL, errors.BuildControlError),
    ],
)
def test_error_from_rpc_maps_each_code(
    code: grpc.StatusCode, error_type: type[errors.BuildControlError]
) -> None:
    error = errors.error_from_rpc(FailedCall(code, "details"))

    assert type(error) is error_type
    assert (error.code, error.details) == (code, "details")
    assert str(error) == f"{code.name}: details"


def test_an_rpc_error_without_a_status_is_unknown() -> None:
    error = errors.error_from_rpc(grpc.RpcError("channel closed"))

    assert type(error) is errors.BuildControlError
    assert error.code == grpc.StatusCode.UNKNOWN
    assert error.details == "channel closed"


def test_cancel_builds_streams_each_build_then_the_summary(
    channel: grpc_testing.Channel, pool: ThreadPoolExecutor
) -> None:
    client = SyncBuildControlClient("unused", channel=channel)
    answer = pool.submit(lambda: list(client.cancel_builds(pipeline="deploy", reason="r")))

    _, request, rpc = channel.take_unary_stream(SERVICE.methods_by_name["CancelBuilds"])
    finished = build_control_pb2.CancelFinished(build_id=BUILD_ID)
    rpc.send_response(build_control_pb2.CancelBuildsResponse(build=finished))
    summary = build_control_pb2.CancelBuildsSummary(matched=1, canceled=1)
    rpc.send_response(build_control_pb2.CancelBuildsResponse(summary=summary))
    rpc.terminate((), grpc.StatusCode.OK, "")

    assert (request.pipeline, request.reason) == ("deploy", "r")
    assert [event.WhichOneof("event") for event in answer.result(timeout=10)] == [
        "build",
        "summary",
    ]


def test_list_agents_returns_the_agents(
    channel: grpc_testing.Channel, pool: ThreadPoolExecutor
) -> None:
    client = SyncBuildControlClient("unused", channel=channel)
    answer = pool.submit(client.list_agents)

    _, _, rpc = channel.take_unary_unary(SERVICE.methods_by_name["ListAgents"])
    agents = [build_control_pb2.Agent(agent_id="a1", connected=True)]
    response = build_control_pb2.ListAgentsResponse(agents=agents)
    rpc.terminate(response, (), grpc.StatusCode.OK, "")

    assert [agent.agent_id for agent in answer.result(timeout=10)] == ["a1"]
