"""google.protobuf.Duration fields from callers: a malformed value (nanos out of
±999,999,999, seconds and nanos of different signs) or a negative one where only a
positive duration makes sense is refused with INVALID_ARGUMENT naming the field, and
nothing changes. The protobuf runtime alone would fold such a pair into some other
number of seconds and let it through."""

from __future__ import annotations

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2
from google.protobuf.duration_pb2 import Duration

from tests.support.secure_servers import SecureServer, pipeline

MALFORMED = [
    (Duration(seconds=1, nanos=1_000_000_000), "nanos"),
    (Duration(seconds=0, nanos=-1_000_000_000), "nanos"),
    (Duration(seconds=-1, nanos=500_000_000), "same sign"),
    (Duration(seconds=5, nanos=-1), "same sign"),
    (Duration(seconds=-5), "negative"),
    (Duration(nanos=-1), "negative"),
    (Duration(seconds=315_576_000_001), "seconds"),
]
IDS = ["nanos_1e9", "nanos_minus_1e9", "neg_seconds_pos_nanos", "pos_seconds_neg_nanos",
       "negative", "negative_nanos_only", "beyond_the_range"]  # fmt: skip


async def stored_ids(server: SecureServer) -> list[str]:
    return [b.build_id for b in await server.app.store.list_builds(100, None, None)]


@pytest.mark.parametrize(("value", "problem"), [*MALFORMED, (Duration(), "positive")],
                         ids=[*IDS, "zero"])  # fmt: skip
async def test_a_malformed_job_timeout_is_refused_naming_the_field(
    server: SecureServer, value: Duration, problem: str
) -> None:
    request = pipeline(jobs=2)
    request.stages[0].jobs[1].timeout.CopyFrom(value)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await server.submit("alice", request=request)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert details.startswith("stages[0].jobs[1].timeout:"), details
    assert problem in details, details
    assert await stored_ids(server) == []


@pytest.mark.parametrize(("value", "problem"), MALFORMED, ids=IDS)
async def test_a_malformed_grace_period_is_refused_naming_the_field(
    server: SecureServer, value: Duration, problem: str
) -> None:
    build = await server.submit("alice")
    before = await server.snapshot(build.build_id)
    cancel = build_control_pb2.CancelRequest(build_id=build.build_id, grace_period=value)
    many = build_control_pb2.CancelBuildsRequest(
        ids=build_control_pb2.BuildIds(build_ids=[build.build_id]), grace_period=value
    )
    for method, request in (("Cancel", cancel), ("CancelBuilds", many)):
        call = getattr(server.stub, method)(request, metadata=server.auth("alice"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in call:
                pass
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, method
        details = refused.value.details() or ""
        assert details.startswith("grace_period:") and problem in details, (method, details)
        assert await server.snapshot(build.build_id) == before


async def test_well_formed_durations_still_pass(server: SecureServer) -> None:
    request = pipeline()
    request.stages[0].jobs[0].timeout.CopyFrom(Duration(seconds=59, nanos=999_999_999))
    build = await server.submit("alice", request=request)
    stored = await server.stored(build.build_id)
    assert stored.stages[0].jobs[0].timeout == pytest.approx(60.0)
    cancel = build_control_pb2.CancelRequest(
        build_id=build.build_id, grace_period=Duration(nanos=500_000_000)
    )
    messages = [m async for m in server.stub.Cancel(cancel, metadata=server.auth("alice"))]
    assert messages[-1].finished.cancel.grace_period_seconds == pytest.approx(0.5)
