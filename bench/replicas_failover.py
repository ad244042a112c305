"""The replicas scenario's failover: SIGKILL one replica while builds of its shards
run, and time from the kill to the first StopJob an agent receives for one of them.

Right after the kill each of those builds gets a Cancel sent to the survivor, retried
on UNAVAILABLE (what a client behind a load balancer does); meanwhile the agents whose
streams the dead replica held reconnect to the survivor (what their balancer does),
saying Hello with their jobs. The survivor takes the dead replica's shards once their
leases expire (--replicas-lease), recovers their builds, applies the cancels waiting
in their inbox and sends the stops: to the agents it held all along at once, to the
ones that reconnected once they are back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2_grpc, build_pb2
from fleet_control import Fleet
from latency import CancelTimes, cancel_once
from replicas_paths import Placed, first_after
from server_process import ServerProcess

RETRY_AFTER = 0.05  # a client's backoff between two tries
GIVE_UP_AFTER = 120.0


async def cancel_retried(
    stub: build_control_pb2_grpc.BuildControlStub, build_id: str
) -> tuple[CancelTimes, int]:
    """The Cancel read to its terminal message, tried again on UNAVAILABLE; with the
    number of tries."""
    deadline = time.monotonic() + GIVE_UP_AFTER
    tries = 0
    while True:
        tries += 1
        try:
            return await cancel_once(stub, build_id), tries
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        await asyncio.sleep(RETRY_AFTER)


async def run(
    victim: ServerProcess,
    survivor: ServerProcess,
    survivor_stub: build_control_pb2_grpc.BuildControlStub,
    fleet: Fleet,
    builds: list[Placed],
    victims_agents: list[str],
) -> dict[str, Any]:
    """`builds`: running builds owned by `victim`; `victims_agents`: the agents whose
    streams it holds."""
    killed_at = time.monotonic()
    victim.process.kill()
    cancels = [asyncio.create_task(cancel_retried(survivor_stub, b.build_id)) for b in builds]
    await fleet.move(victims_agents, survivor.target)
    moved_at = time.monotonic()
    await victim.process.wait()
    ended = await asyncio.gather(*cancels)
    stops = (await fleet.stops())["stops"]
    bad = [b.build_id for b, (t, _) in zip(builds, ended, strict=True)
           if t.status != build_pb2.BUILD_STATUS_CANCELED]  # fmt: skip
    assert not bad, f"{len(bad)} cancels after the failover did not end CANCELED"
    stayed = [stops[b.job_id] for b in builds if b.holder != victim.target and b.job_id in stops]
    came_back = [stops[b.job_id] for b in builds if b.holder == victim.target and b.job_id in stops]
    return {
        "builds": len(builds),
        # CANCELED without a StopJob at the agent: FORCED at the stop's deadline.
        "stops_missing": sum(b.job_id not in stops for b in builds),
        "first_stop_s": first_after(stayed + came_back, killed_at),
        "first_stop_agent_on_survivor_s": first_after(stayed, killed_at),
        "first_stop_agent_reconnected_s": first_after(came_back, killed_at),
        "last_stop_s": max(stayed + came_back) - killed_at if stayed + came_back else None,
        "agents_reconnected_s": moved_at - killed_at,
        "agents_reconnected": len(victims_agents),
        "all_canceled_s": max(t.terminal for t, _ in ended) - killed_at,
        "tries": sorted(tries for _, tries in ended),
    }
