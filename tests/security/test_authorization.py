"""What each role may do: viewers read, operators submit and cancel, the per-pipeline
cancel policy (BROAD / RESTRICTED), and that a refused call changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2, build_pb2, housekeeping_pb2
from buildcontrol_server.domain.errors import PermissionDenied
from buildcontrol_server.security.access_rules import REQUIRED_ROLE
from buildcontrol_server.security.cancel_policy import CancelPolicy, CancelRules
from buildcontrol_server.security.principals import ANONYMOUS, Principal, Role

from tests.security.scripted import running_build
from tests.support.secure_servers import SecureServer, cancel_all


async def refusal(work: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await work
    return caught.value.code(), caught.value.details() or ""


async def test_a_viewer_reads_builds_and_agents(server: SecureServer) -> None:
    build = await server.submit("alice")
    who = server.auth("victor")
    got = await server.stub.GetBuild(
        build_control_pb2.GetBuildRequest(build_id=build.build_id), metadata=who
    )
    assert got.build.build_id == build.build_id
    listed = await server.stub.ListBuilds(build_control_pb2.ListBuildsRequest(), metadata=who)
    assert [b.build_id for b in listed.builds] == [build.build_id]
    await server.stub.ListAgents(build_control_pb2.ListAgentsRequest(), metadata=who)
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build.build_id), metadata=who
    )
    assert (await watch.read()).snapshot.build_id == build.build_id
    watch.cancel()


async def test_a_viewer_may_not_submit_and_nothing_is_stored(server: SecureServer) -> None:
    code, details = await refusal(server.submit("victor"))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "SubmitBuild" in details
    assert await server.app.store.list_builds(10, None, None) == []


async def test_a_viewer_cancelling_is_denied_and_the_build_is_unchanged(
    server: SecureServer,
) -> None:
    build_id, agent = await running_build(server, "alice")
    before = await server.snapshot(build_id)
    code, _ = await refusal(cancel_all(server, "victor", build_id, reason="I am curious"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert await server.snapshot(build_id) == before
    assert (await server.get(build_id)).status == build_pb2.BUILD_STATUS_RUNNING
    await agent.drop()


async def test_under_broad_any_operator_cancels_anyones_build(server: SecureServer) -> None:
    build_id, agent = await running_build(server, "alice", pipeline="web")
    # The stream ends once the agent confirms the stop.
    task = asyncio.create_task(cancel_all(server, "bob", build_id, reason="broad", force=True))
    stop = (await agent.next("stop_job")).stop_job
    agent.send(job_stopped=_stopped(stop))
    messages = await task
    assert messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert messages[-1].finished.cancel.requested_by == "bob"
    await agent.drop()


async def test_under_restricted_another_operator_is_denied_and_nothing_changes(
    server: SecureServer,
) -> None:
    build_id, agent = await running_build(server, "alice", pipeline="release-1")
    before = await server.snapshot(build_id)
    code, details = await refusal(cancel_all(server, "bob", build_id))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "RESTRICTED" in details and build_id in details
    assert await server.snapshot(build_id) == before
    assert agent.received.empty(), "no stop may reach the agent"
    await agent.drop()


async def test_under_restricted_the_submitter_cancels_her_own_build(server: SecureServer) -> None:
    build = await server.submit("alice", name="release-2")  # QUEUED: no agent needed
    messages = await cancel_all(server, "alice", build.build_id)
    assert messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED


async def test_under_restricted_an_admin_cancels_and_is_recorded_not_the_request_field(
    server: SecureServer,
) -> None:
    build_id, agent = await running_build(server, "alice", pipeline="release-1")
    call = asyncio.create_task(
        cancel_all(server, "root", build_id, requested_by="mallory", force=True)
    )
    stop = (await agent.next("stop_job")).stop_job
    agent.send(job_stopped=_stopped(stop))
    messages = await call
    assert messages[0].accepted.cancel.requested_by == "root"
    stored = await server.stored(build_id)
    assert stored.cancel is not None and stored.cancel.requested_by == "root"
    await agent.drop()


async def test_the_build_records_its_submitter(server: SecureServer) -> None:
    build = await server.submit("alice")
    assert (await server.stored(build.build_id)).submitted_by == "alice"


async def test_cancel_builds_touching_one_forbidden_build_cancels_none(
    server: SecureServer,
) -> None:
    mine = await server.submit("bob", name="release-3")
    theirs = await server.submit("alice", name="release-3")
    before = [await server.snapshot(b.build_id) for b in (mine, theirs)]
    by_pipeline = build_control_pb2.CancelBuildsRequest(pipeline="release-3")
    by_ids = build_control_pb2.CancelBuildsRequest(
        ids=build_control_pb2.BuildIds(build_ids=[mine.build_id, theirs.build_id])
    )
    for request in (by_pipeline, by_ids):
        call = server.stub.CancelBuilds(request, metadata=server.auth("bob"), timeout=10)
        code, _ = await refusal(_drain(call))
        assert code is grpc.StatusCode.PERMISSION_DENIED
    assert [await server.snapshot(b.build_id) for b in (mine, theirs)] == before


async def test_a_finished_restricted_build_is_not_cancellable_by_others_either(
    server: SecureServer,
) -> None:
    build = await server.submit("alice", name="release-4")
    await cancel_all(server, "alice", build.build_id)
    code, _ = await refusal(cancel_all(server, "bob", build.build_id))
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_an_agent_token_may_not_use_build_control(server: SecureServer) -> None:
    code, _ = await refusal(
        server.stub.ListBuilds(
            build_control_pb2.ListBuildsRequest(), metadata=server.auth("agent-a")
        )
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_person_may_not_connect_as_an_agent(server: SecureServer) -> None:
    agent = server.agent("root")  # the admin's token, any agent id
    code, _ = await agent.refused()
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert server.app.hub.sessions() == []


# ---- the policy itself ------------------------------------------------------------


def test_policies_by_pattern() -> None:
    rules = CancelRules(("release-*", "deploy"))
    assert rules.policy_of("release-1") is CancelPolicy.RESTRICTED
    assert rules.policy_of("deploy") is CancelPolicy.RESTRICTED
    assert rules.policy_of("deploy-2") is CancelPolicy.BROAD
    assert CancelRules(("*",)).policy_of("anything") is CancelPolicy.RESTRICTED


def test_a_build_without_submitter_under_restricted_only_an_admin_cancels() -> None:
    rules = CancelRules(("*",))
    operator = Principal("alice", Role.OPERATOR)
    with pytest.raises(PermissionDenied):
        rules.check(operator, "b1", "p", None)
    rules.check(Principal("root", Role.ADMIN), "b1", "p", None)
    rules.check(ANONYMOUS, "b1", "p", None)  # authentication off: no policy


def _stopped(stop: agent_pb2.StopJob) -> agent_pb2.JobStopped:
    return agent_pb2.JobStopped(
        build_id=stop.build_id,
        job_id=stop.job_id,
        outcome=build_pb2.JOB_OUTCOME_GRACEFUL,
        exit_code=143,
    )


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


def test_every_rpc_of_ours_has_an_access_rule() -> None:
    services = [
        build_control_pb2.DESCRIPTOR.services_by_name["BuildControl"],
        agent_pb2.DESCRIPTOR.services_by_name["AgentService"],
        housekeeping_pb2.DESCRIPTOR.services_by_name["Housekeeping"],
    ]
    methods = {f"/{s.full_name}/{m.name}" for s in services for m in s.methods}
    assert methods == set(REQUIRED_ROLE)
