"""Scenario 2: Cancel RPCs at rising concurrency → cancels per second.

At each level, that many workers each cancel one running build after another (Cancel
sent, stream read to its terminal message: the agent has confirmed the stop and the
build is CANCELED on disk). A level's rate is its cancels over its wall time. Also
recorded per level: the latency of those cancels, commits the server used, and CPU
seconds of the server, the agent fleet and this (Cancel-sending) process, since on
2 cores all three share the machine."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import grpc
from buildcontrol_proto.v1 import build_control_pb2_grpc, build_pb2
from builds import running
from fleet_control import Fleet
from latency import cancel_once
from server_process import ServerProcess, cpu_seconds_of
from stats import summary_ms

COMMITS = "buildcontrol_store_commits_total"


async def run(server: ServerProcess, fleet: Fleet, levels: list[tuple[int, int]]) -> dict[str, Any]:
    """`levels`: (concurrency, cancels) pairs, run in order."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = build_control_pb2_grpc.BuildControlStub(channel)
        total = sum(count for _, count in levels)
        by_build = await running(stub, fleet, total, "throughput")
        ids = iter(sorted(by_build))
        rows = []
        for concurrency, count in levels:
            batch = [next(ids) for _ in range(count)]
            rows.append(await level(server, fleet, stub, concurrency, batch))
    best = max(rows, key=lambda row: row["cancels_per_s"])
    return {"levels": rows, "best_cancels_per_s": best["cancels_per_s"], "best_level": best}


class Measured(Protocol):
    """What a level reads of the server: a ServerProcess, or several replicas summed."""

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float: ...

    def cpu_seconds(self) -> float: ...

    def profiled(self, phase: str) -> AbstractAsyncContextManager[None]: ...


async def level(
    server: Measured,
    fleet: Fleet,
    stub: build_control_pb2_grpc.BuildControlStub,
    concurrency: int,
    build_ids: list[str],
) -> dict[str, Any]:
    """`concurrency` workers cancel `build_ids` one after another each, to terminal."""
    pending = iter(build_ids)
    latencies: list[float] = []
    failed = 0

    async def worker() -> None:
        nonlocal failed
        for build_id in pending:
            times = await cancel_once(stub, build_id)
            latencies.append(times.terminal - times.sent)
            failed += times.status != build_pb2.BUILD_STATUS_CANCELED

    async with server.profiled(f"throughput_{concurrency}"):
        commits = server.metric(COMMITS)
        cpu = (server.cpu_seconds(), cpu_seconds_of(fleet.pid), time.process_time())
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        used = (
            server.cpu_seconds() - cpu[0],
            cpu_seconds_of(fleet.pid) - cpu[1],
            time.process_time() - cpu[2],
        )
    commits = server.metric(COMMITS) - commits
    assert failed == 0, f"{failed} cancels did not end CANCELED"
    return {
        "concurrency": concurrency,
        "cancels": len(build_ids),
        "seconds": elapsed,
        "cancels_per_s": len(build_ids) / elapsed,
        "commits": commits,
        "cancels_per_commit": len(build_ids) / commits if commits else None,
        "cancel_to_terminal": summary_ms(latencies),
        "cpu_share": {
            "server": used[0] / elapsed,
            "agents": used[1] / elapsed,
            "client": used[2] / elapsed,
        },
    }
