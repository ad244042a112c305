"""Responses larger than a client accepts, and retried submits.

The attack on the client side: a build at the `--max-jobs` x `--max-steps` limits is
larger as a response than gRPC's default receive limit, so a default client saw an
error for a submit that had succeeded, and its retry made a duplicate. Now SubmitBuild
answers such a build without its stages (with counts), the Python clients and the CLI
accept the server's largest responses, and `request_id` makes a retry return the
first build instead of creating a second."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.sync_client import SyncBuildControlClient
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from buildcontrol_server.domain.submission import DEFAULT_LIMITS

from tests.support.processes import BUILDCONTROL, start_server
from tests.support.secure_servers import SecureServer, pipeline

JOBS, STEPS = DEFAULT_LIMITS.max_jobs, DEFAULT_LIMITS.max_steps
COMMAND_LENGTH = 350  # 10,000 steps of it: a request just under the 4 MiB bound


def largest_build() -> build_control_pb2.SubmitBuildRequest:
    """max_jobs jobs with max_steps steps in all, the request under --max-message-bytes."""
    per_stage = JOBS // 10
    request = build_control_pb2.SubmitBuildRequest(pipeline="huge")
    for s in range(10):
        stage = request.stages.add(name=f"s{s}")
        for j in range(per_stage):
            job = stage.jobs.add(name=f"j{j}")
            for n in range(STEPS // JOBS):
                job.steps.add(command=f"echo {s}.{j}.{n} ".ljust(COMMAND_LENGTH, "x"))
    assert request.ByteSize() < 4 * 1024 * 1024
    return request


async def stored_ids(server: SecureServer) -> list[str]:
    return [b.build_id for b in await server.app.store.list_builds(100, None, None)]


async def test_the_largest_build_submits_with_a_default_client_and_reads_with_ours(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path / "data")
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:  # gRPC defaults
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            response = await stub.SubmitBuild(largest_build(), timeout=60)
            assert response.stages_omitted and not response.build.stages
            assert (response.job_count, response.step_count) == (JOBS, STEPS)
            assert response.build.status == build_pb2.BUILD_STATUS_QUEUED
            build_id = response.build.build_id
            # What a default client cannot read, ours can.
            with pytest.raises(grpc.aio.AioRpcError) as too_large:
                await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))
            assert too_large.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        async with BuildControlClient(server.target, timeout=60) as client:
            build = await client.get(build_id)
            assert sum(len(stage.jobs) for stage in build.stages) == JOBS
        with SyncBuildControlClient(server.target, timeout=60) as sync_client:
            assert len(sync_client.get(build_id).stages) == 10
        process = await asyncio.create_subprocess_exec(
            *BUILDCONTROL, "get", build_id, "--json", "--server", server.target,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err
        shown = json.loads(out)
        assert sum(len(stage["jobs"]) for stage in shown["stages"]) == JOBS
    finally:
        assert await server.stop() == 0


async def test_a_small_build_comes_whole_and_a_basic_view_comes_without_stages(
    server: SecureServer,
) -> None:
    whole = await server.stub.SubmitBuild(pipeline(jobs=2), metadata=server.auth("alice"))
    assert not whole.stages_omitted and len(whole.build.stages[0].jobs) == 2
    assert (whole.job_count, whole.step_count) == (2, 2)
    basic = await server.stub.SubmitBuild(
        pipeline(jobs=2, view=build_control_pb2.BUILD_VIEW_BASIC), metadata=server.auth("alice")
    )
    assert basic.stages_omitted and not basic.build.stages and basic.job_count == 2


async def test_a_retried_submit_with_the_same_request_id_makes_no_second_build(
    server: SecureServer,
) -> None:
    request = pipeline(request_id="deploy-7f3a")
    first = await server.stub.SubmitBuild(request, metadata=server.auth("alice"))
    assert not first.replayed
    # Retries, some racing each other: all answer with the first build.
    retries = await asyncio.gather(
        *(server.stub.SubmitBuild(request, metadata=server.auth("alice")) for _ in range(5))
    )
    assert {r.build.build_id for r in retries} == {first.build.build_id}
    assert all(r.replayed for r in retries)
    assert await stored_ids(server) == [first.build.build_id]
    assert len(server.app.registry) == 1


async def test_racing_first_submits_of_one_request_id_make_one_build(
    server: SecureServer,
) -> None:
    request = pipeline(request_id="race-1")
    answers = await asyncio.gather(
        *(server.stub.SubmitBuild(request, metadata=server.auth("alice")) for _ in range(8))
    )
    assert len({a.build.build_id for a in answers}) == 1
    assert sum(not a.replayed for a in answers) == 1
    assert len(await stored_ids(server)) == 1


async def test_a_request_id_reused_for_another_request_is_refused(server: SecureServer) -> None:
    first = await server.submit("alice", request=pipeline(request_id="k1"))
    stored = await stored_ids(server)
    before = await server.snapshot(first.build_id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await server.submit("alice", request=pipeline(request_id="k1", command="rm -rf /"))
    assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS
    details = refused.value.details() or ""
    assert "request_id" in details and first.build_id in details
    assert await stored_ids(server) == stored
    assert await server.snapshot(first.build_id) == before


async def test_request_ids_are_per_caller(server: SecureServer) -> None:
    """Bob cannot read, or block, Alice's build by guessing her key."""
    alice = await server.submit("alice", request=pipeline(request_id="shared"))
    bob = await server.stub.SubmitBuild(pipeline(request_id="shared"), metadata=server.auth("bob"))
    assert bob.build.build_id != alice.build_id and not bob.replayed
    assert len(await stored_ids(server)) == 2


@pytest.mark.parametrize(
    ("request_id", "problem"), [("r" * 201, "longer than 200"), ("a\nb", "control characters")]
)
async def test_a_bad_request_id_is_refused(
    server: SecureServer, request_id: str, problem: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await server.submit("alice", request=pipeline(request_id=request_id))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in (refused.value.details() or "")
    assert problem in (refused.value.details() or "")
    assert await stored_ids(server) == []


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_retried_with_its_request_id_returns_the_first_build(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path / "data")
    try:
        first_file, other_file = tmp_path / "a.yaml", tmp_path / "b.yaml"
        first_file.write_text("pipeline: p\nstages:\n  - name: s\n    jobs:\n"
                              "      - name: j\n        steps: [\"sleep 600\"]\n")  # fmt: skip
        other_file.write_text(first_file.read_text().replace("sleep 600", "true"))
        common = ("--server", server.target, "--request-id", "release-42")
        code, first, _ = await cli("submit", str(first_file), *common)
        assert code == 0, first
        code, again, _ = await cli("submit", str(first_file), *common)
        assert code == 0 and again.split()[0] == first.split()[0]
        code, out, err = await cli("submit", str(other_file), *common)
        assert code == 4 and out == "", (out, err)
        assert "ALREADY_EXISTS" in err and first.split()[0] in err
        code, listed, _ = await cli("list", "--server", server.target)
        assert code == 0 and len(listed.splitlines()) == 1
        # Without --request-id every run is a new build.
        code, fresh, _ = await cli("submit", str(first_file), "--server", server.target)
        assert code == 0 and fresh.split()[0] != first.split()[0]
    finally:
        assert await server.stop() == 0
