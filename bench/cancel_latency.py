"""Cancel latency against a real server process (issue: core, and the durable store).

1. 200 sequential cancels of running builds: Cancel sent → StopJob received at the
   agent, and Cancel sent → terminal message received by the client.
2. 200 concurrent cancels of different builds: commits the server used for their
   CANCELING writes (from its own /metrics), i.e. cancels per commit.

Run: make bench   (or .venv/bin/python bench/cancel_latency.py [--builds N])
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))

from buildcontrol.v1 import build_control_pb2, build_control_pb2_grpc
from load_agent import LoadAgent
from server_process import ServerProcess, start_server
from stats import print_table, summary_ms, write_json


def one_job_build(pipeline: str) -> build_control_pb2.SubmitBuildRequest:
    return build_control_pb2.SubmitBuildRequest(
        pipeline=pipeline,
        stages=[
            build_control_pb2.StageSpec(
                name="s",
                jobs=[
                    build_control_pb2.JobSpec(
                        name="j", steps=[build_control_pb2.StepSpec(command="sleep 600")]
                    )
                ],
            )
        ],
    )


async def running_builds(
    stub: build_control_pb2_grpc.BuildControlStub,
    agents: list[LoadAgent],
    count: int,
    pipeline: str,
) -> dict[str, str]:
    """Submit `count` one-job builds and wait until agents hold all of their jobs."""
    builds = await asyncio.gather(
        *(stub.SubmitBuild(one_job_build(pipeline)) for _ in range(count))
    )
    wanted = {b.build.build_id for b in builds}
    while True:
        held = {
            build: job for agent in agents for job, build in agent.jobs.items() if build in wanted
        }
        if len(held) == count:
            return held
        for agent in agents:
            agent.job_arrived.clear()
        await asyncio.wait(
            [asyncio.create_task(a.job_arrived.wait()) for a in agents],
            timeout=10,
            return_when=asyncio.FIRST_COMPLETED,
        )


def agent_of(agents: list[LoadAgent], job_id: str) -> LoadAgent:
    return next(a for a in agents if job_id in a.jobs)


async def sequential(server: ServerProcess, count: int) -> dict[str, dict[str, float]]:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = build_control_pb2_grpc.BuildControlStub(channel)
        agents = [LoadAgent(server.target, f"seq-{i}", capacity=count) for i in range(2)]
        await asyncio.gather(*(a.start() for a in agents))
        held = await running_builds(stub, agents, count, "sequential")
        to_stop: list[float] = []
        to_terminal: list[float] = []
        for build_id, job_id in held.items():
            arrival = agent_of(agents, job_id).stop_arrival(job_id)
            sent = time.perf_counter()
            call = stub.Cancel(build_control_pb2.CancelRequest(build_id=build_id, reason="bench"))
            last = None
            async for message in call:
                last = message
            done = time.perf_counter()
            assert last is not None and last.WhichOneof("event") == "finished"
            to_stop.append(await arrival - sent)
            to_terminal.append(done - sent)
        await asyncio.gather(*(a.close() for a in agents))
    return {
        "cancel -> StopJob at agent": summary_ms(to_stop),
        "cancel -> terminal message": summary_ms(to_terminal),
    }


async def concurrent(server: ServerProcess, count: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = build_control_pb2_grpc.BuildControlStub(channel)
        agents = [LoadAgent(server.target, f"con-{i}", capacity=count) for i in range(4)]
        await asyncio.gather(*(a.start() for a in agents))
        held = await running_builds(stub, agents, count, "concurrent")
        for agent in agents:
            agent.hold_stops = True
        commits_before = server.metric("buildcontrol_store_commits_total")
        calls = [
            stub.Cancel(build_control_pb2.CancelRequest(build_id=b, reason="bench")) for b in held
        ]
        started = time.perf_counter()
        firsts = await asyncio.gather(*(call.read() for call in calls))
        accepted_in = time.perf_counter() - started
        # Every CANCELING write is committed before its first message, and agents hold
        # their confirmations until now: these commits are CANCELING writes only.
        commits = server.metric("buildcontrol_store_commits_total") - commits_before
        for agent in agents:
            agent.release_stops()
        assert all(f.WhichOneof("event") == "accepted" for f in firsts)
        for call in calls:
            call.cancel()
        await asyncio.gather(*(a.close() for a in agents))
    return {
        "cancels": count,
        "commits_until_all_accepted": commits,
        "cancels_per_commit": count / commits if commits else float("inf"),
        "all_accepted_ms": accepted_in * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--builds", type=int, default=200)
    args = parser.parse_args()
    server = await start_server()
    try:
        latency = await sequential(server, args.builds)
        burst = await concurrent(server, args.builds)
    finally:
        await server.stop()
    print_table(f"{args.builds} sequential cancels, push over the agent stream", latency)
    print(
        f"\n{burst['cancels']} concurrent cancels: "
        f"{burst['commits_until_all_accepted']:.0f} commits "
        f"until all ACCEPTED ({burst['cancels_per_commit']:.1f} cancels per commit), "
        f"all accepted in {burst['all_accepted_ms']:.0f} ms"
    )
    path = write_json("cancel_latency", {"sequential": latency, "concurrent": burst})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    asyncio.run(main())
