"""With authentication on, a job token works on every replica: a job of a build that
one replica owns, run by an agent that another replica holds, uploads its log and its
steps read their build through the replica their agent talks to. Once the job is over
its token is refused there too, except for the log's tail of a stopped job."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.security.tokens import ADMIN_TOKEN_FILE, AGENT_TOKEN_FILE

from tests.replicas.replicas import StartTwo, Stub, until_connected
from tests.support.agent_peer import bearer
from tests.support.build_waits import build_of
from tests.support.processes import AgentProc, ServerProc, start_agent

CLI = shlex.quote(str(Path(sys.executable).with_name("buildcontrol")))


def probe(targets: dict[str, str], out: Path) -> str:
    """Print a line, read the own build with the job token from each replica (name:
    target), keep the token."""
    reads = [
        f'{CLI} get --server {target} "$BUILDCONTROL_BUILD_ID" > {out}/{name}.txt 2>&1;'
        f" echo $? > {out}/{name}"
        for name, target in targets.items()
    ]
    return "; ".join(
        [
            "echo output-of-the-step",
            f'echo "$BUILDCONTROL_JOB_TOKEN" > {out}/token',
            'export BUILDCONTROL_TOKEN="$BUILDCONTROL_JOB_TOKEN"',
            *reads,
        ]
    )


async def until_complete(stub: Stub, build_id: str, job_id: str, admin: str) -> bytes:
    """The job's whole log once the server holds it complete."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    request = build_control_pb2.GetJobLogRequest(build_id=build_id, job_id=job_id)
    while True:
        piece = await stub.GetJobLog(request, metadata=bearer(admin), timeout=10)
        if piece.complete:
            return piece.data
        assert loop.time() < deadline, f"log of {job_id} never complete: {piece.data!r}"
        await asyncio.sleep(0.05)


async def agent_on_a(
    tmp_path: Path, url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> tuple[ServerProc, ServerProc, str]:
    """Replicas a and b with authentication on, an agent connected to a only; and the
    admin token."""
    a, b = await two_replicas(url, "--auth", "on")
    # The first of the two to start made the database's tokens in its data directory.
    made = next(d for d in (tmp_path / "a", tmp_path / "b") if (d / ADMIN_TOKEN_FILE).exists())
    admin = (made / ADMIN_TOKEN_FILE).read_text().strip()
    token_file = ["--token-file", str(made / AGENT_TOKEN_FILE)]
    agents.append(await start_agent(a.target, "agent-a", tmp_path, "os=linux", 2, *token_file))
    await until_connected(a, "agent-a", metadata=bearer(admin))
    return a, b, admin


@pytest.mark.timeout(120)
async def test_a_job_token_works_on_the_replica_holding_the_agent_not_only_on_the_owner(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b, admin = await agent_on_a(tmp_path, postgres_url, two_replicas, agents)
    out = tmp_path / "step"
    out.mkdir()
    async with grpc.aio.insecure_channel(b.target) as channel:
        stub = Stub(channel)
        # Owned by b, which has no agent: it runs on a's agent, whose job token calls
        # (the log upload, the step's own read) go to a.
        request = build_of(1, probe({"a": a.target, "b": b.target}, out), "across")
        build = (await stub.SubmitBuild(request, metadata=bearer(admin), timeout=10)).build
        watch = stub.WatchBuild(
            build_control_pb2.WatchBuildRequest(build_id=build.build_id),
            metadata=bearer(admin),
            timeout=60,
        )
        async for _ in watch:  # it ends when the build is terminal
            pass
        request = build_control_pb2.GetBuildRequest(build_id=build.build_id)
        finished = (await stub.GetBuild(request, metadata=bearer(admin), timeout=10)).build
        assert finished.status == build_pb2.BUILD_STATUS_SUCCEEDED, finished
        [job] = finished.stages[0].jobs
        for name in ("a", "b"):  # the holder of its agent, the owner of its build
            answer = (out / f"{name}.txt").read_text()
            assert (out / name).read_text().strip() == "0", answer
            assert build.build_id in answer
        log = await until_complete(stub, build.build_id, job.job_id, admin)
        assert b"output-of-the-step" in log
        # The job is over: its token is refused on both replicas.
        token = (out / "token").read_text().strip()
        for target in (a.target, b.target):
            async with grpc.aio.insecure_channel(target) as other:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await Stub(other).GetBuild(
                        build_control_pb2.GetBuildRequest(build_id=build.build_id),
                        metadata=bearer(token),
                        timeout=10,
                    )
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.timeout(120)
async def test_a_cancelled_jobs_last_log_bytes_reach_the_owner_through_the_agents_holder(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    # The agent reports the stop first and sends the log's tail after it, to a, which
    # does not run the build (the job may be over there by then: the tail is admitted,
    # tests/security/test_job_admission.py); the log b serves ends with the stop line.
    _, b, admin = await agent_on_a(tmp_path, postgres_url, two_replicas, agents)
    async with grpc.aio.insecure_channel(b.target) as channel:
        stub = Stub(channel)
        request = build_of(1, "echo started; sleep 600", "across")
        build = (await stub.SubmitBuild(request, metadata=bearer(admin), timeout=10)).build
        job_id = build.stages[0].jobs[0].job_id
        follow = stub.FollowJobLog(
            build_control_pb2.FollowJobLogRequest(build_id=build.build_id, job_id=job_id),
            metadata=bearer(admin),
            timeout=60,
        )
        seen = b""
        async for message in follow:
            seen += message.data
            if b"started\n" in seen:
                break
        cancel = build_control_pb2.CancelRequest(build_id=build.build_id, reason="not needed")
        events = [e async for e in stub.Cancel(cancel, metadata=bearer(admin), timeout=60)]
        assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
        seen += b"".join([message.data async for message in follow])
        log = await until_complete(stub, build.build_id, job_id, admin)
        assert log == seen
        assert b"\nstarted\n--- stopped: SIGTERM after " in log
        assert log.endswith(b": not needed ---\n")
