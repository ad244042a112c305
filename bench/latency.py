"""Scenarios 1 and 4: single cancels of running builds, with agents that are pushed
their stops (ours) or poll for them every 2 s (the field's way).

For each cancel: Cancel sent → the agent learned it must stop (StopJob received, or
the poll answer saying so), and Cancel sent → the Cancel stream's terminal message.
Both are measured with time.monotonic() (CLOCK_MONOTONIC, shared by every process of
the machine): the agents live in the fleet process, the Cancel caller here."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from builds import running
from fleet_control import Fleet
from server_process import ServerProcess
from stats import summary_ms


@dataclass
class CancelTimes:
    build_id: str
    sent: float
    accepted: float = 0.0
    terminal: float = 0.0
    status: int = 0


async def cancel_once(stub: build_control_pb2_grpc.BuildControlStub, build_id: str) -> CancelTimes:
    """One Cancel, read to its terminal message; times in monotonic seconds."""
    times = CancelTimes(build_id, time.monotonic())
    call = stub.Cancel(build_control_pb2.CancelRequest(build_id=build_id, reason="bench"))
    async for message in call:
        kind = message.WhichOneof("event")
        if kind == "accepted":
            times.accepted = time.monotonic()
        elif kind == "finished":
            times.terminal = time.monotonic()
            times.status = message.finished.status
    return times


async def run(
    server: ServerProcess,
    fleet: Fleet,
    mode: str,
    builds: int,
    cancels: int,
    pace: float | None,
    free_slots: bool = True,
    seed: int = 8,
) -> dict[str, Any]:
    """`pace` None: each cancel starts when the previous one ended (closed loop).
    Otherwise a cancel starts every `pace` seconds, whether or not the previous one
    ended (for polling agents, where one cancel takes about a second)."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = build_control_pb2_grpc.BuildControlStub(channel)
        pipeline = f"latency-{mode}"
        by_build = await running(stub, fleet, builds, pipeline)
        chosen = random.Random(seed).sample(sorted(by_build), cancels)
        async with server.profiled(f"latency_{mode}"):
            cpu_before = server.cpu_seconds()
            started = time.monotonic()
            if pace is None:
                results = [await cancel_once(stub, build_id) for build_id in chosen]
            else:
                tasks = []
                for position, build_id in enumerate(chosen):
                    await asyncio.sleep(max(0.0, started + position * pace - time.monotonic()))
                    tasks.append(asyncio.create_task(cancel_once(stub, build_id)))
                results = await asyncio.gather(*tasks)
            elapsed = time.monotonic() - started
            server_cpu = server.cpu_seconds() - cpu_before
        fleet_report = await fleet.stops()
        stops: dict[str, float] = fleet_report["stops"]
        bad = [r.build_id for r in results if r.status != build_pb2.BUILD_STATUS_CANCELED]
        assert not bad, f"{len(bad)} cancels did not end CANCELED"
        to_stop = [stops[by_build[r.build_id][0]] - r.sent for r in results]
        to_terminal = [r.terminal - r.sent for r in results]
        to_accepted = [r.accepted - r.sent for r in results]
        if free_slots:  # for the scenarios that follow on this server (not measured)
            await _cancel_rest(stub, pipeline)
    return {
        "mode": mode,
        "builds": builds,
        "cancels": cancels,
        "pace_ms": None if pace is None else pace * 1000,
        "elapsed_s": elapsed,
        "server_cpu_s": server_cpu,
        "pushes_ignored": fleet_report["pushes_ignored"],
        "get_build_polls": fleet_report["polls"],
        "cancel_to_stop": summary_ms(to_stop),
        "cancel_to_accepted": summary_ms(to_accepted),
        "cancel_to_terminal": summary_ms(to_terminal),
        "samples_ms": {
            "cancel_to_stop": [round(s * 1000, 4) for s in to_stop],
            "cancel_to_terminal": [round(s * 1000, 4) for s in to_terminal],
        },
    }


async def _cancel_rest(stub: build_control_pb2_grpc.BuildControlStub, pipeline: str) -> None:
    call = stub.CancelBuilds(
        build_control_pb2.CancelBuildsRequest(pipeline=pipeline, reason="bench cleanup")
    )
    async for _ in call:
        pass
