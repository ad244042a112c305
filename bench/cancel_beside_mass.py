"""A lone cancel while a mass cancel runs: the agent-stop scenario's last phase, printed,
not judged (no issue sets a target for it yet).

Builds of `jobs` jobs on one pipeline and LONE one-job builds on another run on a fleet
of load agents. One CancelBuilds cancels the first pipeline; meanwhile the second's
builds are cancelled one at a time, PAUSE apart, on a channel of their own (another
caller). Measured: Cancel sent → StopJob at the load agent for each lone cancel sent
before the CancelBuilds' summary. On one event loop a mass cancel keeps every pass of
it busy (15-67 ms a pass here), and a new call waits several passes before its
handler starts: this is the number that shows it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc
from builds import running
from cancel_builds_stop import AGENTS, quiet
from fleet_control import Fleet
from load_agent import PUSH
from server_process import ServerProcess
from stats import summary_ms

MASS, LONE_PIPELINE = "bench-beside-mass", "bench-beside-lone"
LONE = 60
PAUSE = 0.02


async def run(server: ServerProcess, builds: int, jobs: int) -> dict[str, Any]:
    capacity = -(-(builds * jobs + LONE) // AGENTS)
    fleet = await Fleet.start(server.target)
    try:
        await fleet.connect(AGENTS, capacity, PUSH, "beside")
        async with (
            grpc.aio.insecure_channel(server.target) as channel,
            grpc.aio.insecure_channel(server.target) as lone_channel,
        ):
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            await running(stub, fleet, builds, MASS, jobs=jobs)
            lone = await running(stub, fleet, LONE, LONE_PIPELINE, held_before=builds * jobs)
            await quiet(server)
            mass_over = asyncio.Event()
            sent: dict[str, float] = {}  # job id → when its build's Cancel was sent

            async def mass() -> float:
                started = time.monotonic()
                request = build_control_pb2.CancelBuildsRequest(
                    pipeline=MASS, reason="bench", batch_builds=True
                )
                async for message in stub.CancelBuilds(request):
                    if message.WhichOneof("event") == "summary":
                        break
                mass_over.set()
                return time.monotonic() - started

            async def lone_cancels() -> None:
                lone_stub = build_control_pb2_grpc.BuildControlStub(lone_channel)
                for build_id, (job_id,) in lone.items():
                    if mass_over.is_set():
                        return
                    sent[job_id] = time.monotonic()
                    request = build_control_pb2.CancelRequest(build_id=build_id, reason="lone")
                    async for message in lone_stub.Cancel(request):
                        if message.WhichOneof("event") == "accepted":
                            break
                    await asyncio.sleep(PAUSE)  # pacing of the lone caller, not a wait

            seconds, _ = await asyncio.gather(mass(), lone_cancels())
        stops = (await fleet.stops())["stops"]
    finally:
        await fleet.close()
    waits = [stops[job] - at for job, at in sent.items() if job in stops]
    assert len(waits) == len(sent), f"{len(sent) - len(waits)} lone stops never arrived"
    return {
        "builds": builds,
        "jobs": builds * jobs,
        "mass_all_canceled_s": seconds,
        "lone_cancels": len(waits),
        "lone_cancel_to_stop": summary_ms(waits),
    }


def lines(result: dict[str, Any]) -> list[str]:
    wait = result["lone_cancel_to_stop"]
    return [
        f"  beside it (a new CancelBuilds of {result['builds']} x"
        f" {result['jobs'] // result['builds']}, all CANCELED"
        f" {result['mass_all_canceled_s']:.2f} s): {result['lone_cancels']} lone Cancels of"
        f" another pipeline, one at a time, Cancel → StopJob p50 {wait['p50_ms']:.1f} /"
        f" max {wait['max_ms']:.1f} ms (printed, not judged)"
    ]
