"""The metrics interceptor counts every RPC by method, type and status code (aborts
included), whatever the handler's shape: unary, server stream, bidi stream."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc, build_control_pb2

from tests.observability.observed_servers import Observed
from tests.support.metrics_scrape import delta
from tests.support.pipelines import pipeline

BUILD_CONTROL = "buildcontrol.v1.BuildControl"
UNKNOWN_BUILD = "b" + "0" * 20  # well formed, never issued

HANDLED = "buildcontrol_grpc_server_handled_total"
SECONDS_COUNT = "buildcontrol_grpc_server_handling_seconds_count"


async def test_interceptor_counts_a_not_found_and_an_ok_call_by_method_and_code(
    observed: Observed,
) -> None:
    before = await observed.scrape()
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await observed.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=UNKNOWN_BUILD))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    build = (await observed.stub.SubmitBuild(pipeline())).build
    await observed.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build.build_id))
    after = await observed.scrape()

    get = {"grpc_service": BUILD_CONTROL, "grpc_method": "GetBuild", "grpc_type": "unary"}
    assert delta(before, after, HANDLED, **get, grpc_code="NOT_FOUND") == 1
    assert delta(before, after, HANDLED, **get, grpc_code="OK") == 1
    assert delta(before, after, HANDLED, **get) == 2  # no other code was counted
    assert delta(before, after, SECONDS_COUNT, **get) == 2
    submit = {"grpc_service": BUILD_CONTROL, "grpc_method": "SubmitBuild"}
    assert delta(before, after, HANDLED, **submit, grpc_code="OK") == 1


async def test_interceptor_counts_aborted_streams_by_their_code(observed: Observed) -> None:
    before = await observed.scrape()
    # A server stream (an async generator handler) that aborts before its first message.
    cancel = observed.stub.Cancel(build_control_pb2.CancelRequest(build_id=UNKNOWN_BUILD))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await cancel.read()
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # A bidi stream (a coroutine handler writing with context.write) whose first
    # message is not a Hello.
    agents = agent_pb2_grpc.AgentServiceStub(observed.channel)
    call = agents.Connect()
    await call.write(agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat()))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(call.read(), 10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = await observed.scrape()

    assert delta(before, after, HANDLED, grpc_service=BUILD_CONTROL, grpc_method="Cancel",
                 grpc_type="server_stream", grpc_code="NOT_FOUND") == 1  # fmt: skip
    assert delta(before, after, HANDLED, grpc_service="buildcontrol.v1.AgentService",
                 grpc_method="Connect", grpc_type="bidi_stream",
                 grpc_code="INVALID_ARGUMENT") == 1  # fmt: skip
