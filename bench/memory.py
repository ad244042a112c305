"""Scenario 5: server memory (RSS, /proc/PID/status VmRSS) per idle agent stream and
per live build.

Each measure starts a fresh server, warms it up (one build submitted and cancelled,
so lazily built code paths and buffers exist before the baseline), reads RSS, adds
the load, lets it settle and reads RSS again:

- agents: 1,000 idle agent streams (each its own connection, Hello sent, no job).
- builds: 10,000 live builds of one job, queued (no agent: nothing runs them), so
  what is counted is what the server keeps per live build: its actor and task, its
  state (build, stages, jobs, steps), timers and queue entry."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc
from builds import build_request, submit
from fleet_control import Fleet
from server_process import ServerProcess, start_server

SETTLE_STEP = 0.5
SETTLE_READS = 20


async def _settled_rss(server: ServerProcess) -> int:
    """RSS once it stops moving: two reads SETTLE_STEP apart within 64 KiB (at most
    SETTLE_READS reads)."""
    last = server.rss_bytes()
    for _ in range(SETTLE_READS):
        await asyncio.sleep(SETTLE_STEP)
        now = server.rss_bytes()
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


async def _warm_up(stub: build_control_pb2_grpc.BuildControlStub) -> None:
    build = (await stub.SubmitBuild(build_request("warm-up", 1))).build
    call = stub.Cancel(build_control_pb2.CancelRequest(build_id=build.build_id, reason="warm-up"))
    async for _ in call:
        pass


async def per_agent_stream(agents: int, server_loop: str | None, loop: str) -> dict[str, Any]:
    server = await start_server(loop=server_loop)
    fleet = await Fleet.start(server.target, loop)
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            await _warm_up(build_control_pb2_grpc.BuildControlStub(channel))
            before = await _settled_rss(server)
            await fleet.connect(agents, capacity=1, mode="push", prefix="idle")
            after = await _settled_rss(server)
    finally:
        await fleet.close()
        await server.stop()
    return {
        "agents": agents,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_agent_stream": (after - before) / agents,
    }


async def _start_bare_server() -> ServerProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("bare_agent_server.py")),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    if not line.startswith("listening on "):
        process.kill()
        await process.wait()
        raise RuntimeError(f"bare agent server did not start: {line!r}")
    return ServerProcess(process, line.split()[-1], "", Path("."))


async def per_bare_agent_stream(agents: int, loop: str) -> dict[str, Any]:
    """The same measure against bare_agent_server.py: grpc.aio's own cost."""
    server = await _start_bare_server()
    fleet = await Fleet.start(server.target, loop)
    try:
        await fleet.connect(5, capacity=1, mode="push", prefix="warm-up")
        before = await _settled_rss(server)
        await fleet.connect(agents, capacity=1, mode="push", prefix="idle")
        after = await _settled_rss(server)
    finally:
        await fleet.close()
        await server.stop()
    return {
        "agents": agents,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_agent_stream": (after - before) / agents,
    }


async def per_live_build(builds: int, server_loop: str | None) -> dict[str, Any]:
    server = await start_server(loop=server_loop)
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            await _warm_up(stub)
            before = await _settled_rss(server)
            await submit(stub, builds, "memory", jobs=1)
            after = await _settled_rss(server)
            live = server.metric("buildcontrol_live_build_actors")
    finally:
        await server.stop()
    assert live == builds, f"{live} live builds, wanted {builds}"
    return {
        "builds": builds,
        "shape": "1 stage, 1 job, 1 step; QUEUED (no agent)",
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_live_build": (after - before) / builds,
    }
