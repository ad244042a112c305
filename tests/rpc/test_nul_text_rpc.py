"""A NUL in any text the server keeps is refused as the caller's mistake, on every
backend alike: PostgreSQL's text cannot hold one, so before this a build named with
one failed its commit on PostgreSQL with UNAVAILABLE ("try again", which never
helps; a forwarded cancel with one would have failed at every drain of a replica's
inbox), and SQLite kept it. The same for a name asked for in a listing or a CancelBuilds: PostgreSQL
answered INTERNAL. Each case: INVALID_ARGUMENT naming the field, nothing written."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2

from tests.support.build_calls import store_snapshot, submit
from tests.support.pipelines import pipeline
from tests.support.servers import Running

NUL = "a\x00b"


# Each field a submit keeps, and how to put a NUL into it.
_PUT_NUL: dict[str, Callable[[build_control_pb2.SubmitBuildRequest], None]] = {
    "pipeline": lambda r: setattr(r, "pipeline", NUL),
    "concurrency_group": lambda r: setattr(r, "concurrency_group", NUL),
    "stages[0].name": lambda r: setattr(r.stages[0], "name", NUL),
    "stages[0].jobs[0].name": lambda r: setattr(r.stages[0].jobs[0], "name", NUL),
    "stages[0].jobs[0].steps[0].name": lambda r: setattr(r.stages[0].jobs[0].steps[0], "name", NUL),
    "stages[0].jobs[0].steps[0].command": lambda r: setattr(
        r.stages[0].jobs[0].steps[0], "command", f"echo {NUL}"
    ),
    "stages[0].jobs[0].labels key": lambda r: r.stages[0].jobs[0].labels.__setitem__(NUL, "v"),
    "stages[0].jobs[0].labels['k']": lambda r: r.stages[0].jobs[0].labels.__setitem__("k", NUL),
}
SUBMIT_FIELDS = list(_PUT_NUL)


def _named(field: str) -> build_control_pb2.SubmitBuildRequest:
    request = pipeline(labels={"os": "plan9"})
    _PUT_NUL[field](request)
    return request


async def _refused(server: Running, call: Callable[[], object], field: str) -> None:
    before = await store_snapshot(server)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call()  # type: ignore[misc]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == f"{field}: contains NUL"
    assert await store_snapshot(server) == before


@pytest.mark.parametrize("field", SUBMIT_FIELDS)
async def test_a_submit_with_a_nul_in_a_name_is_refused(stored_server: Running, field: str) -> None:
    await _refused(stored_server, lambda: stored_server.stub.SubmitBuild(_named(field)), field)


@pytest.mark.parametrize("field", ["reason", "requested_by"])
async def test_a_cancel_with_a_nul_is_refused_and_the_build_runs_on(
    stored_server: Running, field: str
) -> None:
    build = await submit(stored_server, labels={"os": "plan9"})
    request = build_control_pb2.CancelRequest(build_id=build.build_id, reason="ok")
    setattr(request, field, NUL)

    async def cancel() -> None:
        async for _ in stored_server.stub.Cancel(request, timeout=10):
            pass

    await _refused(stored_server, cancel, field)


@pytest.mark.parametrize("field", ["pipeline", "concurrency_group"])
async def test_a_cancel_builds_naming_a_nul_is_refused(stored_server: Running, field: str) -> None:
    await submit(stored_server, labels={"os": "plan9"})
    request = build_control_pb2.CancelBuildsRequest(reason="all")
    setattr(request, field, NUL)

    async def cancel_builds() -> None:
        async for _ in stored_server.stub.CancelBuilds(request, timeout=10):
            pass

    await _refused(stored_server, cancel_builds, field)


async def test_a_listing_of_a_pipeline_with_a_nul_is_refused(stored_server: Running) -> None:
    request = build_control_pb2.ListBuildsRequest(pipeline=NUL)
    await _refused(stored_server, lambda: stored_server.stub.ListBuilds(request), "pipeline")
