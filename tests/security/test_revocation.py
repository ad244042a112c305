"""Revocation reaches open calls: after `buildcontrol token revoke` (or any change of
the tokens) every open call of that token ends with UNAUTHENTICATED within a second —
agent streams, WatchBuild, Cancel streams — and a revoked agent's reports change
nothing. Other principals' calls go on. Every test runs on both backends: the tokens
file beside SQLite, the database's tokens on PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.security import tokens
from buildcontrol_server.security.principals import Principal, Role
from google.protobuf.duration_pb2 import Duration

from tests.security.scripted import running_build
from tests.support.secure_servers import SecureServer

CLI = str(Path(sys.executable).with_name("buildcontrol"))


@pytest.fixture
def server(stored_server: SecureServer) -> SecureServer:
    """Every test on both backends (conftest's `server` is SQLite's only)."""
    return stored_server


# The promise: an open call ends within a second of the file's change.
WITHIN = 1.0
WAIT = 10.0


async def revoke(server: SecureServer, name: str) -> float:
    """`buildcontrol token revoke` as a real process; the time it finished."""
    process = await asyncio.create_subprocess_exec(
        CLI,
        "token",
        "revoke",
        *server.token_flags(),
        "--name",
        name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return time.monotonic()


def watch(server: SecureServer, build_id: str, who: str) -> grpc.aio.UnaryStreamCall:
    return server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id),
        metadata=server.auth(who),
        timeout=60,
    )


async def ended(call: grpc.aio.UnaryStreamCall) -> tuple[grpc.StatusCode, str, float]:
    """Read `call` to its end; its status, details and when it ended."""
    try:
        async with asyncio.timeout(WAIT):
            while await call.read() is not grpc.aio.EOF:
                pass
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or "", time.monotonic()
    return grpc.StatusCode.OK, "", time.monotonic()


async def test_a_revoked_agents_open_stream_ends_within_a_second(server: SecureServer) -> None:
    agent = server.agent("agent-a")
    await agent.connect()
    done = await revoke(server, "agent-a")
    code, details = await agent.ended()
    assert time.monotonic() - done < WITHIN
    assert code is grpc.StatusCode.UNAUTHENTICATED and "revoked" in details
    assert server.app.hub.sessions() == []
    # It gets no job any more: a new build stays QUEUED.
    build = await server.submit("alice")
    assert (await server.get(build.build_id)).status == build_pb2.BUILD_STATUS_QUEUED


async def test_a_revoked_agents_report_is_refused_and_changes_nothing(
    server: SecureServer,
) -> None:
    build_id, agent = await running_build(server, "alice")
    job_id = (await server.stored(build_id)).jobs()[0].job_id
    before = await server.snapshot(build_id)
    await server.rewrite_tokens(lambda now: [e for e in now if e.principal.name != "agent-a"])
    if server.store_url is not None:
        # The database tells the server by NOTIFY (or its 0.5 s poll), not at the next
        # call as the file's stat does: the report below comes once the server has the
        # change, which is what "after the revocation" means there.
        await server.app.security.tokens.poll()  # type: ignore[union-attr]
    # At once, before any check of the server's could run: a forged success.
    agent.finished(build_id, job_id)
    code, _ = await agent.ended()
    assert code is grpc.StatusCode.UNAUTHENTICATED
    stored = await server.stored(build_id)
    assert stored.jobs()[0].status.name == "RUNNING"
    assert (await server.get(build_id)).status == build_pb2.BUILD_STATUS_RUNNING
    assert (await server.snapshot(build_id))[1:] == before[1:]


async def test_a_revoked_viewers_watch_ends_and_others_watch_on(server: SecureServer) -> None:
    build_id, agent = await running_build(server, "alice")
    victors, bobs = watch(server, build_id, "victor"), watch(server, build_id, "bob")
    assert (await victors.read()).HasField("snapshot")
    assert (await bobs.read()).HasField("snapshot")
    done = await revoke(server, "victor")
    code, details, at = await ended(victors)
    assert code is grpc.StatusCode.UNAUTHENTICATED and "victor" in details
    assert at - done < WITHIN
    # Bob's watch still gets the build's changes.
    job_id = (await server.stored(build_id)).jobs()[0].job_id
    agent.finished(build_id, job_id)
    code, _, _ = await ended(bobs)
    assert code is grpc.StatusCode.OK
    await agent.leave()


async def test_a_revoked_operators_cancel_stream_ends_but_the_cancel_holds(
    server: SecureServer,
) -> None:
    build_id, agent = await running_build(server, "alice")
    cancel = server.stub.Cancel(
        # A long grace: the scripted agent never confirms, the stream stays open.
        build_control_pb2.CancelRequest(
            build_id=build_id, reason="stop it", grace_period=Duration(seconds=300)
        ),
        metadata=server.auth("alice"),
        timeout=60,
    )
    first = await cancel.read()
    assert first.HasField("accepted")
    done = await revoke(server, "alice")
    code, _, at = await ended(cancel)
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert at - done < WITHIN
    # The cancel was accepted before: it is not undone by the revocation.
    assert (await server.get(build_id)).status == build_pb2.BUILD_STATUS_CANCELING
    await agent.drop()


async def test_a_token_whose_role_changes_ends_its_open_calls(server: SecureServer) -> None:
    build_id, agent = await running_build(server, "alice")
    alices = watch(server, build_id, "alice")
    assert (await alices.read()).HasField("snapshot")
    await server.rewrite_tokens(
        lambda now: [
            tokens.TokenEntry(Principal("alice", Role.VIEWER), e.sha256)
            if e.principal.name == "alice"
            else e
            for e in now
        ]
    )
    code, _, _ = await ended(alices)
    assert code is grpc.StatusCode.UNAUTHENTICATED
    await agent.drop()
