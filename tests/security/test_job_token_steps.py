"""A real step of a real (reference) agent gets BUILDCONTROL_JOB_TOKEN with the ids of
its build and job, and with it the `buildcontrol` CLI reads its own build and nothing
else; once the job is over the token is refused."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import grpc
import pytest
from buildcontrol_client import Agent, AgentOptions
from buildcontrol_client.cli_exit import EXIT_DENIED, EXIT_OK
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.support.agent_peer import bearer
from tests.support.secure_servers import SecureServer

CLI = str(Path(sys.executable).with_name("buildcontrol"))


def step_script(server: SecureServer, out: Path, other_build: str) -> str:
    """Record the step's environment, then try the job token on the server."""
    cli = shlex.quote(CLI)
    target = f"--server {server.target}"
    return "\n".join(
        [
            f"env > {out}/env",
            'export BUILDCONTROL_TOKEN="$BUILDCONTROL_JOB_TOKEN"',
            f'{cli} get {target} "$BUILDCONTROL_BUILD_ID" > {out}/own.txt 2>&1; '
            f"echo $? > {out}/own",
            f"{cli} get {target} {other_build} > /dev/null 2>&1; echo $? > {out}/other",
            f"{cli} list {target} > /dev/null 2>&1; echo $? > {out}/list",
        ]
    )


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, _, value in pairs}


async def test_a_step_reads_its_own_build_with_its_job_token_and_nothing_else(
    server: SecureServer, tmp_path: Path
) -> None:
    other = await server.submit("bob", name="elsewhere", command="true")
    out = tmp_path / "step"
    out.mkdir()
    request = build_control_pb2.SubmitBuildRequest(
        pipeline="web",
        stages=[
            build_control_pb2.StageSpec(
                name="s",
                jobs=[
                    build_control_pb2.JobSpec(
                        name="probe",
                        steps=[
                            build_control_pb2.StepSpec(
                                command=step_script(server, out, other.build_id)
                            )
                        ],
                    )
                ],
            )
        ],
    )
    build = (await server.stub.SubmitBuild(request, metadata=server.auth("alice"))).build
    agent = Agent(
        server.target,
        "agent-a",
        capacity=1,
        labels={},
        options=AgentOptions(token=server.tokens["agent-a"]),
    )
    running = asyncio.create_task(agent.run())
    try:
        watch = server.stub.WatchBuild(
            build_control_pb2.WatchBuildRequest(build_id=build.build_id),
            metadata=server.auth("root"),
            timeout=60,
        )
        statuses = [m.build_changed.status async for m in watch if m.HasField("build_changed")]
        assert statuses[-1] == build_pb2.BUILD_STATUS_SUCCEEDED
    finally:
        agent.request_shutdown()
        await asyncio.wait_for(running, 20)
    env = read_env(out / "env")
    job = (await server.stored(build.build_id)).jobs()[0]
    assert env["BUILDCONTROL_BUILD_ID"] == build.build_id
    assert env["BUILDCONTROL_JOB_ID"] == job.job_id
    token = env["BUILDCONTROL_JOB_TOKEN"]
    assert token.startswith("bcj_")
    assert server.tokens["agent-a"] not in (out / "env").read_text()
    assert (out / "own").read_text().strip() == str(EXIT_OK), (out / "own.txt").read_text()
    assert build.build_id in (out / "own.txt").read_text()
    assert (out / "other").read_text().strip() == str(EXIT_DENIED)
    assert (out / "list").read_text().strip() == str(EXIT_DENIED)
    # The job is over: its token no longer opens anything.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await server.stub.GetBuild(
            build_control_pb2.GetBuildRequest(build_id=build.build_id), metadata=bearer(token)
        )
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
