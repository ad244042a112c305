"""A supersede (cancel_in_progress) is a cancel by the submitter of the newer build:
it obeys the cancel policy. The attack: an operator who may not cancel another user's
RESTRICTED build submits any pipeline into that build's concurrency group with
cancel_in_progress. The RESTRICTED build must run on untouched, the new build waits
its turn, and the submit response names the build it waits for; what the submitter
may cancel is cancelled in their name. Recovery re-applies supersedes by the same rule."""

from __future__ import annotations

import time
from pathlib import Path

from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.domain import submission
from buildcontrol_server.domain.model import ChangeSet
from buildcontrol_server.store.sqlite import SqliteStore

from tests.security.scripted import settled
from tests.support.secure_servers import SecureServer, pipeline, secure_server
from tests.support.servers import settings_for

GROUP = "deploy-prod"


async def submit_in_group(
    server: SecureServer, who: str, name: str, supersede: bool = False
) -> build_control_pb2.SubmitBuildResponse:
    request = pipeline(name=name, concurrency_group=GROUP, cancel_in_progress=supersede)
    response: build_control_pb2.SubmitBuildResponse = await server.stub.SubmitBuild(
        request, metadata=server.auth(who), timeout=10
    )
    return response


async def until_terminal(server: SecureServer, build_id: str) -> build_pb2.Build:
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id),
        metadata=server.auth("root"),
        timeout=20,
    )
    async for _ in watch:
        pass
    return await server.get(build_id)


async def test_a_supersede_cannot_cancel_a_restricted_build_of_another_user(
    server: SecureServer,
) -> None:
    agent = server.agent("agent-a")
    await agent.connect()
    protected = (await submit_in_group(server, "alice", "release-api")).build
    job = await agent.take_job()
    await settled(server, protected.build_id)
    broad = (await submit_in_group(server, "alice", "web")).build  # waits in the group
    before = await server.snapshot(protected.build_id)

    attack = await submit_in_group(server, "bob", "web", supersede=True)

    assert list(attack.waiting_for_build_ids) == [protected.build_id]
    assert list(attack.superseded_build_ids) == [broad.build_id]
    assert attack.build.status == build_pb2.BUILD_STATUS_QUEUED
    # What bob may cancel (a BROAD build) is cancelled in his name, naming his build.
    cancelled = await until_terminal(server, broad.build_id)
    assert cancelled.status == build_pb2.BUILD_STATUS_CANCELED
    assert cancelled.cancel.requested_by == "bob"
    assert cancelled.cancel.reason == f"superseded by {attack.build.build_id}"
    # The RESTRICTED build is exactly as it was: no stop reached its agent.
    assert await server.snapshot(protected.build_id) == before
    assert (await server.get(attack.build.build_id)).status == build_pb2.BUILD_STATUS_QUEUED
    # The new build waits its turn: it runs once the RESTRICTED one has finished.
    agent.finished(protected.build_id, job.job_id)
    assert (await until_terminal(server, protected.build_id)).status == (
        build_pb2.BUILD_STATUS_SUCCEEDED
    )
    nxt = await agent.take_job()
    assert nxt.build_id == attack.build.build_id
    await agent.leave()


async def test_the_submitter_supersedes_their_own_restricted_build(
    server: SecureServer,
) -> None:
    older = (await submit_in_group(server, "alice", "release-api")).build
    newer = await submit_in_group(server, "alice", "release-api", supersede=True)
    assert list(newer.superseded_build_ids) == [older.build_id]
    assert list(newer.waiting_for_build_ids) == []
    final = await until_terminal(server, older.build_id)
    assert final.status == build_pb2.BUILD_STATUS_CANCELED
    assert final.cancel.requested_by == "alice"
    assert final.cancel.reason == f"superseded by {newer.build.build_id}"


async def test_an_admin_supersedes_any_build(server: SecureServer) -> None:
    older = (await submit_in_group(server, "alice", "release-api")).build
    newer = await submit_in_group(server, "root", "web", supersede=True)
    assert list(newer.superseded_build_ids) == [older.build_id]
    final = await until_terminal(server, older.build_id)
    assert final.cancel.requested_by == "root"


async def test_recovery_re_applies_a_supersede_under_the_same_policy(tmp_path: Path) -> None:
    """A crash between bob's submit and its cancels: on restart, his supersede cancels
    the build he may cancel and leaves alice's RESTRICTED one as it was."""
    data = tmp_path / "data"
    data.mkdir()
    store = SqliteStore(str(settings_for(data).database_path))
    await store.open()
    specs = [
        ("release-api", "alice", False),
        ("web", "alice", False),
        ("web", "bob", True),
    ]
    builds = []
    for n, (name, who, supersede) in enumerate(specs):
        spec = submission.PipelineSpec(
            pipeline=name,
            stages=(
                submission.StageSpec(
                    "s", (submission.JobSpec("j", steps=(submission.StepSpec("true"),)),)
                ),
            ),
            concurrency_group=GROUP,
            cancel_in_progress=supersede,
        )
        build = submission.new_build(spec, time.time() + n * 0.01, submitted_by=who)
        await store.commit(ChangeSet(new_build=build))
        builds.append(build)
    await store.close()
    protected, broad, superseding = builds

    async with secure_server(tmp_path) as server:
        cancelled = await until_terminal(server, broad.build_id)
        assert cancelled.status == build_pb2.BUILD_STATUS_CANCELED
        assert cancelled.cancel.requested_by == "bob"
        assert cancelled.cancel.reason == f"superseded by {superseding.build_id}"
        kept = await server.stored(protected.build_id)
        assert kept.status.value == "QUEUED" and kept.cancel is None
        assert kept.version == protected.version
        assert (await server.get(superseding.build_id)).status == build_pb2.BUILD_STATUS_QUEUED
