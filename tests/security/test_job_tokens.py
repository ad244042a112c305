"""Job tokens: every AssignJob carries one; it reads its own build (GetBuild,
WatchBuild) and nothing else, and is refused once its job is terminal. Each attack
goes through the real server and leaves the store as it was."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.security.job_token_calls import assigned, finish, refusal
from tests.support.agent_peer import AgentPeer, bearer
from tests.support.secure_servers import SecureServer, pipeline

WAIT = 10.0


def get(server: SecureServer, build_id: str, token: str) -> Awaitable[Any]:
    return server.stub.GetBuild(
        build_control_pb2.GetBuildRequest(build_id=build_id), metadata=bearer(token), timeout=WAIT
    )


async def builds_stored(server: SecureServer) -> list[str]:
    return [b.build_id for b in await server.app.store.list_builds(100, None, None)]


async def test_every_assignment_carries_a_job_token_of_its_own(server: SecureServer) -> None:
    _, agent, assignments = await assigned(server, jobs=2)
    first, second = (a.job_token for a in assignments)
    assert first.startswith("bcj_") and second.startswith("bcj_") and first != second
    assert server.tokens["agent-a"] not in (first, second)
    await agent.drop()


async def test_a_job_token_reads_its_own_build(server: SecureServer) -> None:
    build_id, agent, (assignment,) = await assigned(server)
    got = await get(server, build_id, assignment.job_token)
    assert got.build.build_id == build_id
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id),
        metadata=bearer(assignment.job_token),
        timeout=WAIT,
    )
    assert (await watch.read()).snapshot.build_id == build_id
    watch.cancel()
    await agent.drop()


async def test_a_job_token_may_not_read_another_build(server: SecureServer) -> None:
    _, agent, (assignment,) = await assigned(server)
    other = await server.submit("bob", name="secret-project")
    code, details = await refusal(get(server, other.build_id, assignment.job_token))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "another build" in details
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=other.build_id),
        metadata=bearer(assignment.job_token),
        timeout=WAIT,
    )
    code, _ = await refusal(watch.read())
    assert code is grpc.StatusCode.PERMISSION_DENIED
    await agent.drop()


async def test_a_job_token_may_not_submit_list_or_see_agents(server: SecureServer) -> None:
    _, agent, (assignment,) = await assigned(server)
    who = bearer(assignment.job_token)
    before = await builds_stored(server)
    code, details = await refusal(server.stub.SubmitBuild(pipeline(), metadata=who))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "SubmitBuild" in details
    assert await builds_stored(server) == before
    code, _ = await refusal(
        server.stub.ListBuilds(build_control_pb2.ListBuildsRequest(), metadata=who)
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    code, _ = await refusal(
        server.stub.ListAgents(build_control_pb2.ListAgentsRequest(), metadata=who)
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    await agent.drop()


@pytest.mark.parametrize("method", ["Cancel", "CancelBuilds"])
async def test_a_job_token_may_not_cancel_even_its_own_build(
    server: SecureServer, method: str
) -> None:
    build_id, agent, (assignment,) = await assigned(server)
    before = await server.snapshot(build_id)
    who = bearer(assignment.job_token)
    if method == "Cancel":
        call = server.stub.Cancel(
            build_control_pb2.CancelRequest(build_id=build_id, reason="take over"), metadata=who
        )
    else:
        call = server.stub.CancelBuilds(
            build_control_pb2.CancelBuildsRequest(
                ids=build_control_pb2.BuildIds(build_ids=[build_id]), reason="x"
            ),
            metadata=who,
        )
    code, _ = await refusal(call.read())
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert await server.snapshot(build_id) == before
    await agent.drop()


async def test_a_job_token_may_not_open_an_agent_stream(server: SecureServer) -> None:
    build_id, agent, (assignment,) = await assigned(server)
    before = await server.snapshot(build_id)
    impostor = AgentPeer(None, "agent-a", channel=server.channel, token=assignment.job_token)
    code, _ = await impostor.refused()
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert await server.snapshot(build_id) == before
    # The real agent's stream is untouched: it still finishes its job.
    agent.finished(build_id, assignment.job_id)
    await agent.leave()


async def test_a_forged_or_transplanted_job_token_is_unauthenticated(
    server: SecureServer,
) -> None:
    build_id, agent, (assignment,) = await assigned(server)
    token = assignment.job_token
    prefix, mac = token.rsplit(".", 1)
    forged = prefix + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    # The HMAC of one job does not vouch for another job of the same build.
    transplanted = token.replace(assignment.job_id, assignment.job_id + "0")
    for bad in (forged, transplanted, "bcj_" + build_id, "bcj_"):
        code, _ = await refusal(get(server, build_id, bad))
        assert code is grpc.StatusCode.UNAUTHENTICATED, bad
    await agent.drop()


async def test_a_job_token_is_refused_once_its_job_finishes(server: SecureServer) -> None:
    build_id, agent, (first, second) = await assigned(server, jobs=2)
    await finish(server, agent, build_id, first.job_id)
    code, details = await refusal(get(server, build_id, first.job_token))
    assert code is grpc.StatusCode.UNAUTHENTICATED and "finished" in details
    # The other job still runs: its token still reads the build.
    assert (await get(server, build_id, second.job_token)).build.build_id == build_id
    agent.finished(build_id, second.job_id)
    await agent.leave()
    code, _ = await refusal(get(server, build_id, second.job_token))
    assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_an_open_watch_of_a_job_token_ends_when_its_job_finishes(
    server: SecureServer,
) -> None:
    build_id, agent, (first, second) = await assigned(server, jobs=2)
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id),
        metadata=bearer(first.job_token),
        timeout=WAIT,
    )
    assert (await watch.read()).snapshot.build_id == build_id
    agent.finished(build_id, first.job_id)
    # The build goes on (the second job runs); the first job's watch does not.
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        while True:
            await watch.read()
    assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "finished" in (ended.value.details() or "")
    assert (await server.get(build_id)).status == build_pb2.BUILD_STATUS_RUNNING
    agent.finished(build_id, second.job_id)
    await agent.leave()


async def test_a_job_token_of_a_finished_build_is_refused(server: SecureServer) -> None:
    build_id, agent, (assignment,) = await assigned(server)
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id),
        metadata=server.auth("root"),
        timeout=WAIT,
    )
    assert (await watch.read()).HasField("snapshot")
    agent.finished(build_id, assignment.job_id)
    while (message := await watch.read()) is not grpc.aio.EOF:
        last = message
    assert last.build_changed.status == build_pb2.BUILD_STATUS_SUCCEEDED
    await agent.leave()
    code, _ = await refusal(get(server, build_id, assignment.job_token))
    assert code is grpc.StatusCode.UNAUTHENTICATED


def test_job_tokens_are_not_a_role_of_the_tokens_file() -> None:
    from buildcontrol_server.security.tokens import TokensFileError, parse

    entry = {"name": "j", "role": "job", "sha256": "0" * 64}
    with pytest.raises(TokensFileError, match="role"):
        parse(json.dumps({"tokens": [entry]}))
