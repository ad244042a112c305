"""The floor: measured before and after the scenarios of a run, with the same client
(this process) and the same agent program (fleet.py's load agents) as the scenarios,
against floor_server.py (bare grpc.aio, SQLite, PostgreSQL; none of buildcontrol):

  unary_rtt            health Check, one after another: p50 / p99 (ms)
  unary_calls          health Check from `unary_concurrency` workers: calls/s, and
                       calls per second of the bare server's CPU
  push                 a StopJob written on one of `streams` open agent streams → read
                       by its agent, one after another: p50 / p99 (ms)
  sqlite_commit        a one-row UPDATE + COMMIT, WAL, synchronous=NORMAL (ms)
  NAME_commit          the same on PostgreSQL, for each backend NAME given a URL (ms)
  NAME_notify          pg_notify sent → the listener's callback (ms)

Every target of the report is a multiple of these (ratios.py, targets.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from fleet_control import Fleet
from grpc_health.v1 import health_pb2, health_pb2_grpc
from load_agent import PUSH
from server_process import cpu_seconds_of
from stats import summary_ms

FLOOR_SERVER = Path(__file__).with_name("floor_server.py")
# What every run measures (a target may name any of these); PostgreSQL's NAME_commit_*
# and NAME_notify_* only when `measure` is given that backend's URL.
BASE_MEASURES = (
    "unary_rtt_p50_ms", "unary_rtt_p99_ms", "unary_calls_per_s", "unary_calls_per_server_cpu_s",
    "push_p50_ms", "push_p99_ms", "sqlite_commit_p50_ms", "sqlite_commit_p99_ms",
)  # fmt: skip
WARM_UP_CALLS = 50


@dataclass(frozen=True)
class FloorSizes:
    rtt_calls: int = 1000
    unary_calls: int = 4000
    unary_concurrency: int = 64
    streams: int = 200
    pushes: int = 500
    commits: int = 500
    notifies: int = 300


QUICK_SIZES = FloorSizes(
    rtt_calls=100, unary_calls=300, unary_concurrency=16, streams=10, pushes=50, commits=50,
    notifies=30,
)  # fmt: skip


class FloorServer:
    def __init__(self, process: asyncio.subprocess.Process, target: str) -> None:
        self.process = process
        self.target = target

    @classmethod
    async def start(cls) -> FloorServer:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(FLOOR_SERVER),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24,
        )  # fmt: skip
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        if not line.startswith("listening on "):
            process.kill()
            await process.wait()
            raise RuntimeError(f"floor server did not start: {line!r}")
        return cls(process, line.split()[-1])

    async def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 300)
        answer: dict[str, Any] = json.loads(line) if line else {"error": "exited"}
        if "error" in answer:
            raise RuntimeError(f"floor server, op {op}: {answer['error']}")
        return answer

    async def stop(self) -> None:
        try:
            await self.ask("close")
            await asyncio.wait_for(self.process.wait(), 30)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


async def unary_rtt(stub: health_pb2_grpc.HealthStub, calls: int) -> list[float]:
    request = health_pb2.HealthCheckRequest()
    for _ in range(WARM_UP_CALLS):
        await stub.Check(request)
    samples = []
    for _ in range(calls):
        started = time.monotonic()
        await stub.Check(request)
        samples.append(time.monotonic() - started)
    return samples


async def unary_rate(
    stub: health_pb2_grpc.HealthStub, calls: int, concurrency: int, server_pid: int
) -> dict[str, float]:
    request = health_pb2.HealthCheckRequest()
    left = iter(range(calls))

    async def worker() -> None:
        for _ in left:
            await stub.Check(request)

    cpu = cpu_seconds_of(server_pid)
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    server_cpu = cpu_seconds_of(server_pid) - cpu
    return {
        "unary_calls_per_s": calls / elapsed,
        "unary_calls_per_server_cpu_s": calls / server_cpu if server_cpu else 0.0,
    }


async def pushes(server: FloorServer, sizes: FloorSizes, load_loop: str) -> list[float]:
    fleet = await Fleet.start(server.target, load_loop)
    try:
        await fleet.connect(sizes.streams, 1, PUSH, "floor")
        sent: dict[str, float] = (await server.ask("push", count=sizes.pushes))["sent"]
        learned: dict[str, float] = (await fleet.stops())["stops"]
    finally:
        await fleet.close()
    return [learned[job_id] - at for job_id, at in sent.items()]


def _add(
    measures: dict[str, float], samples: dict[str, Any], key: str, values: list[float]
) -> None:
    summary = summary_ms(values)
    measures[f"{key}_p50_ms"] = summary["p50_ms"]
    measures[f"{key}_p99_ms"] = summary["p99_ms"]
    samples[key] = [round(value * 1000, 4) for value in values]


async def measure(
    sizes: FloorSizes, load_loop: str = "asyncio", postgres: dict[str, str] | None = None
) -> dict[str, Any]:
    """{"measures": {name: number}, "samples_ms": {name: [...]}}; `postgres`: backend
    name → URL of each PostgreSQL backend whose commit and NOTIFY floors are wanted."""
    measures: dict[str, float] = {}
    samples: dict[str, Any] = {}
    server = await FloorServer.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            _add(measures, samples, "unary_rtt", await unary_rtt(stub, sizes.rtt_calls))
            measures |= await unary_rate(
                stub, sizes.unary_calls, sizes.unary_concurrency, server.process.pid
            )
        _add(measures, samples, "push", await pushes(server, sizes, load_loop))
        commits = (await server.ask("sqlite", count=sizes.commits))["samples"]
        _add(measures, samples, "sqlite_commit", commits)
        for name, url in (postgres or {}).items():
            commits = (await server.ask("pg_commit", url=url, count=sizes.commits))["samples"]
            _add(measures, samples, f"{name}_commit", commits)
            notifies = (await server.ask("pg_notify", url=url, count=sizes.notifies))["samples"]
            _add(measures, samples, f"{name}_notify", notifies)
    finally:
        await server.stop()
    return {"measures": measures, "sizes": asdict(sizes), "samples_ms": samples}
