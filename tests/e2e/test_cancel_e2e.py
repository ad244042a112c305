"""A user's view: a server process, agent processes, real shell steps, real cancels."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.support.build_waits import Stub, one_job, running_step
from tests.support.processes import (
    BUILDCONTROL,
    AgentProc,
    ServerProc,
    start_agent,
    step_pids,
    wait_gone,
)


async def cancel(
    stub: Stub, build_id: str, **options: object
) -> list[build_control_pb2.CancelResponse]:
    request = build_control_pb2.CancelRequest(build_id=build_id, **options)  # type: ignore[arg-type]
    return [m async for m in stub.Cancel(request, timeout=30)]


async def test_cancel_stops_foreground_and_background_processes_within_2_s(
    server: ServerProc, stub: Stub, agents: list[AgentProc], tmp_path: Path
) -> None:
    agents.append(await start_agent(server.target, "agent-1", tmp_path))
    agents.append(await start_agent(server.target, "agent-2", tmp_path))
    build = (await stub.SubmitBuild(one_job("sleep 600 & sleep 600"))).build
    job = (await running_step(stub, build.build_id)).stages[0].jobs[0]
    all_pids = await step_pids(job.job_id, count=2)
    started = time.monotonic()
    events = await cancel(stub, build.build_id, reason="e2e")
    await wait_gone(all_pids, within=2.0)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"processes gone after {elapsed:.2f} s"
    finished = events[-1].finished
    assert finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_GRACEFUL]
    final = (await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build.build_id))).build
    assert final.status == build_pb2.BUILD_STATUS_CANCELED
    assert final.stages[0].jobs[0].outcome == build_pb2.JOB_OUTCOME_GRACEFUL


async def test_a_step_that_ignores_sigterm_is_killed_after_the_grace(
    server: ServerProc, stub: Stub, agents: list[AgentProc], tmp_path: Path
) -> None:
    agents.append(await start_agent(server.target, "agent-1", tmp_path))
    build = (await stub.SubmitBuild(one_job("trap '' TERM; sleep 600"))).build
    job = (await running_step(stub, build.build_id)).stages[0].jobs[0]
    pids = await step_pids(job.job_id)
    started = time.monotonic()
    events = await cancel(stub, build.build_id, grace_period={"seconds": 1})
    elapsed = time.monotonic() - started
    assert elapsed >= 1.0, "SIGKILL must wait for the grace period"
    await wait_gone(pids, within=2.0)
    finished = events[-1].finished
    assert finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_KILLED]


async def test_cancel_of_queued_build_with_the_cli_ends_canceled_at_once(
    server: ServerProc, stub: Stub, agents: list[AgentProc], tmp_path: Path
) -> None:
    agents.append(await start_agent(server.target, "agent-1", tmp_path))  # wrong labels for the job
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "pipeline: e2e\nstages:\n  - name: build\n    jobs:\n"
        "      - name: mac-only\n        labels: {os: macos}\n        steps: [make]\n"
    )
    submitted = await _cli("submit", str(pipeline), "--json", server=server)
    build_id = json.loads(submitted.splitlines()[0])["buildId"]
    output = await _cli("cancel", build_id, "--reason", "not needed", "--json", server=server)
    lines = [json.loads(line) for line in output.splitlines()]
    assert "accepted" in lines[0] and "finished" in lines[-1]
    assert lines[-1]["finished"]["status"] == "BUILD_STATUS_CANCELED"
    build = (await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))).build
    assert build.status == build_pb2.BUILD_STATUS_CANCELED
    assert build.cancel.reason == "not needed"
    assert build.stages[0].jobs[0].outcome == build_pb2.JOB_OUTCOME_NEVER_STARTED
    # At once: no grace waited for (the default is 10 s), on the server's own clock
    # (the CLI's start-up is seconds on a loaded machine and says nothing here).
    waited = build.finished_at.ToDatetime() - build.cancel.requested_at.ToDatetime()
    assert waited.total_seconds() < 1


async def test_a_build_runs_to_success_on_real_agents(
    server: ServerProc, stub: Stub, agents: list[AgentProc], tmp_path: Path
) -> None:
    agents.append(await start_agent(server.target, "agent-1", tmp_path))
    agents.append(await start_agent(server.target, "agent-2", tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    request = build_control_pb2.SubmitBuildRequest(
        pipeline="e2e",
        stages=[
            build_control_pb2.StageSpec(
                name="one",
                jobs=[
                    build_control_pb2.JobSpec(
                        name=f"j{i}",
                        labels={"os": "linux"},
                        steps=[build_control_pb2.StepSpec(command=f"echo {i} > {out}/stage1-{i}")],
                    )
                    for i in range(2)
                ],
            ),
            build_control_pb2.StageSpec(
                name="two",
                jobs=[
                    build_control_pb2.JobSpec(
                        name="after",
                        labels={"os": "linux"},
                        steps=[
                            build_control_pb2.StepSpec(
                                command=f"test -f {out}/stage1-0 && test -f {out}/stage1-1"
                            )
                        ],
                    )
                ],
            ),
        ],
    )
    build = (await stub.SubmitBuild(request)).build
    async for _ in stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build.build_id), timeout=30
    ):
        pass
    final = (await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build.build_id))).build
    assert final.status == build_pb2.BUILD_STATUS_SUCCEEDED, final


async def _cli(*args: str, server: ServerProc) -> str:
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL,
        args[0],
        "--server",
        server.target,
        *args[1:],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


def test_the_cli_entry_point_is_installed() -> None:
    assert Path(sys.executable).with_name("buildcontrol").exists()
