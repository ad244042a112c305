"""A step cannot reach its agent's token: a real agent (authentication on) runs a real
step that looks for the token in its own environment, its parent's command line, its
parent's environment and the token file; every attempt comes back empty or denied."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from tests.support.processes import BUILDCONTROL, ServerProc, start_server

pytestmark = pytest.mark.e2e
NOBODY = pwd.getpwnam("nobody")

# Written by the step to its log (the agent's work dir): what it could read where.
SNOOP = """
echo "== env"; env
echo "== cmdline"; tr '\\0' ' ' < /proc/$PPID/cmdline; echo
echo "== environ"; tr '\\0' '\\n' < /proc/$PPID/environ
echo "== file"; cat {token_file}
echo "== end"; true
"""


async def run_snooping_build(
    server: ServerProc,
    work: Path,
    token_file: Path,
    agent_args: list[str],
    agent_env: dict[str, str],
    run_as: list[str] = (),  # type: ignore[assignment]
) -> str:
    """Run one build whose step snoops for `token_file` and the agent's secrets, on an
    agent started with `agent_args` (under `run_as`); the step's log."""
    agent = await asyncio.create_subprocess_exec(
        *run_as,
        *BUILDCONTROL,
        "agent",
        "--server",
        server.target,
        "--agent-id",
        "agent-1",
        "--work-dir",
        str(work),
        "--reconnect-max",
        "0.5",
        *agent_args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=(work.parent / "agent.log").open("ab"),
        env=agent_env,
    )
    admin = (server.data_dir / "admin.token").read_text().strip()
    metadata = (("authorization", f"Bearer {admin}"),)
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            request = build_control_pb2.SubmitBuildRequest(
                pipeline="snoop",
                stages=[
                    build_control_pb2.StageSpec(
                        name="s",
                        jobs=[
                            build_control_pb2.JobSpec(
                                name="snoop",
                                steps=[
                                    build_control_pb2.StepSpec(
                                        command=SNOOP.format(token_file=token_file)
                                    )
                                ],
                            )
                        ],
                    )
                ],
            )
            build = (await stub.SubmitBuild(request, metadata=metadata)).build
            watch = build_control_pb2.WatchBuildRequest(build_id=build.build_id)
            async for _ in stub.WatchBuild(watch, metadata=metadata, timeout=60):
                pass
            final = await stub.GetBuild(
                build_control_pb2.GetBuildRequest(build_id=build.build_id), metadata=metadata
            )
            assert final.build.status == build_pb2.BUILD_STATUS_SUCCEEDED
            job_id = final.build.stages[0].jobs[0].job_id
    finally:
        agent.terminate()
        await asyncio.wait_for(agent.wait(), 20)
    return (work / f"{job_id}.log").read_text()


def sections(log: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    name = ""
    for line in log.splitlines():
        if line.startswith("== "):
            name = line[3:]
            parts[name] = ""
        elif name:
            parts[name] += line + "\n"
    return parts


def agent_token(server: ServerProc, where: Path) -> tuple[str, Path]:
    """The server's agent token, copied to `where` (0600, the agent's user)."""
    shutil.copy(server.data_dir / "agent.token", where)
    where.chmod(0o600)
    return where.read_text().strip(), where


@pytest.mark.skipif(os.geteuid() != 0, reason="running steps as another user needs root")
async def test_a_step_run_as_the_step_user_can_read_the_agents_token_nowhere(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path / "data", "--auth", "on")
    try:
        token, token_file = agent_token(server, tmp_path / "agent.token")
        work = tmp_path / "work"
        work.mkdir()
        # The token in the agent's environment as well as in its file.
        env = {**os.environ, "BUILDCONTROL_TOKEN": token, "CLOUD_SECRET": "s3cr3t-cloud"}
        args = ["--token-file", str(token_file), "--step-user", "nobody"]
        log = await run_snooping_build(server, work, token_file, args, env)
    finally:
        await server.stop()
    seen = sections(log)
    assert set(seen) == {"env", "cmdline", "environ", "file", "end"}, log
    assert token not in log and "s3cr3t-cloud" not in log
    assert "USER=nobody" in seen["env"] and "BUILDCONTROL_JOB_ID=" in seen["env"]
    assert str(token_file) in seen["cmdline"]  # the file's name, never the token
    assert "Permission denied" in seen["environ"]
    assert "Permission denied" in seen["file"]


@pytest.mark.skipif(os.geteuid() != 0, reason="starts the agent as nobody")
async def test_a_step_of_the_agents_own_user_cannot_read_the_token_from_env_or_proc(
    tmp_path: Path,
) -> None:
    """Same uid: the agent is not dumpable, so /proc/AGENT/environ is closed; the token
    came from the environment and is filtered out of the step's."""
    server = await start_server(tmp_path / "data", "--auth", "on")
    try:
        token = (server.data_dir / "agent.token").read_text().strip()
        # pytest's own directories are 0700 root: nobody could not even enter them.
        work = Path(tempfile.mkdtemp(prefix="bc-same-uid-")) / "work"
        work.parent.chmod(0o755)
        work.mkdir()
        os.chown(work, NOBODY.pw_uid, NOBODY.pw_gid)
        env = {**os.environ, "BUILDCONTROL_TOKEN": token, "HOME": "/nonexistent"}
        as_nobody = ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}"]
        log = await run_snooping_build(
            server, work, Path("/nonexistent"), [], env, [*as_nobody, "--clear-groups", "--"]
        )
    finally:
        await server.stop()
        shutil.rmtree(work.parent, ignore_errors=True)
    seen = sections(log)
    assert set(seen) == {"env", "cmdline", "environ", "file", "end"}, log
    assert token not in log
    assert "Permission denied" in seen["environ"]
