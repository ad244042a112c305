"""The reference agent as an operator runs it: SIGHUP drains like SIGTERM (jobs stopped
within the grace, reported, agent exits 0), SIGQUIT kills its jobs at once, and an agent
whose token or id is refused exits 6 with one line instead of retrying forever."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.support.build_waits import Stub, one_job, running_step
from tests.support.processes import (
    BUILDCONTROL,
    AgentProc,
    ServerProc,
    job_pids,
    start_agent,
    start_server,
    until,
    wait_gone,
)

WAIT = 30.0


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])
async def test_sighup_drains_and_sigquit_kills_and_no_step_outlives_the_agent(
    server: ServerProc,
    stub: Stub,
    agents: list[AgentProc],
    tmp_path: Path,
    signum: signal.Signals,
) -> None:
    # The step ignores SIGTERM: a graceful drain ends it with SIGKILL after the grace,
    # SIGQUIT kills it at once; either way the agent reports it before it exits.
    agent = await start_agent(
        server.target, "habits", tmp_path, "os=linux", 1, "--shutdown-grace", "0.5"
    )
    agents.append(agent)
    build = (await stub.SubmitBuild(one_job("trap '' TERM; sleep 600"))).build
    job = (await running_step(stub, build.build_id)).stages[0].jobs[0]
    await until(lambda: bool(job_pids(job.job_id)), what="the step's processes")
    pids = job_pids(job.job_id)
    agent.process.send_signal(signum)
    assert await asyncio.wait_for(agent.process.wait(), WAIT) == 0
    await wait_gone(pids, within=5.0)
    request = build_control_pb2.GetBuildRequest(build_id=build.build_id)
    stopped = (await stub.GetBuild(request)).build.stages[0].jobs[0]
    # Stopped by its agent, not by a cancel: the job FAILED, and the server knows it
    # (not LOST after the reconnect window).
    assert stopped.status == build_pb2.JOB_STATUS_FAILED
    assert stopped.outcome != build_pb2.JOB_OUTCOME_LOST


async def test_an_agent_with_a_refused_token_exits_6_with_one_line(tmp_path: Path) -> None:
    server = await start_server(tmp_path / "data", "--auth", "on")
    try:
        token = tmp_path / "wrong.token"
        token.write_text("bct_not-a-real-token\n")
        token.chmod(0o600)
        process = await asyncio.create_subprocess_exec(
            *BUILDCONTROL, "agent", "--server", server.target, "--agent-id", "agent-1",
            "--token-file", str(token), "--work-dir", str(tmp_path / "work"),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(process.communicate(), WAIT)
        assert process.returncode == 6
        errors = [line for line in err.decode().splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "UNAUTHENTICATED" in errors[0], err.decode()
    finally:
        await server.stop()
