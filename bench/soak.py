"""The soak: a server under a steady load of builds for `--minutes` (default 30),
with retention on, sampled every minute: RSS, open file descriptors, live build
actors and the database's size on disk. Fails (exit 1) when, after the warm-up,
something grows beyond its bound, so a leak is caught by a run and not in production.

Load: `--rate` builds a second, each of one job taken by a load agent; a second
after its submission each build is cancelled and its Cancel stream read to the end
(the product's path: CANCELING, StopJob pushed, the agent stops, CANCELED, audit
record). Retention keeps the database at a steady size: at most
`--retain-builds-max` finished builds, audit records of deleted builds for about
`--retain-audit-seconds`, a housekeeping pass every `--housekeeping-interval`.

Bounds, between the first sample after the warm-up and the last one:
  RSS          grows by at most 8 MiB (allocator noise and caches filling up);
  open fds     grow by at most 8 (sockets come and go with load);
  live actors  at most 2 x the builds in flight at once (one per unfinished build);
  database     at most 25 % + 1 MiB larger (retention holds it; SQLite reuses pages).

Run: make soak SOAK_MINUTES=30   (or .venv/bin/python bench/soak.py --minutes 5)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc
from builds import build_request
from fleet_control import Fleet
from load_agent import PUSH
from server_process import ServerProcess, start_server
from stats import RESULTS, machine

RSS_BOUND_MIB = 8.0
FDS_BOUND = 8
DATABASE_BOUND = (1.25, 1.0)  # factor, MiB


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=None, help="default: 2, or 5")
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0, help="builds per second")
    parser.add_argument("--in-flight", type=int, default=200, help="builds open at once")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--capacity", type=int, default=50)
    parser.add_argument("--retain-builds-max", type=int, default=2_000)
    parser.add_argument("--retain-audit-seconds", type=float, default=90.0)
    parser.add_argument("--housekeeping-interval", type=float, default=20.0)
    parser.add_argument("--name", default="soak", help="results file name")
    args = parser.parse_args(argv)
    if args.warmup_minutes is None:
        args.warmup_minutes = 5.0 if args.minutes >= 15 else 2.0
    return args


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def database_bytes(data_dir: Path) -> int:
    return sum(
        path.stat().st_size for path in data_dir.glob("buildcontrol.sqlite3*") if path.is_file()
    )


class Load:
    """Submit at a steady rate; cancel each build a second later; count what ended."""

    def __init__(self, stub: build_control_pb2_grpc.BuildControlStub, args: argparse.Namespace):
        self._stub = stub
        self._rate = args.rate
        self._slots = asyncio.Semaphore(args.in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self.submitted = 0
        self.canceled = 0
        self.errors = 0

    async def run(self, seconds: float) -> None:
        started = time.monotonic()
        request = build_request("soak", 1)
        while time.monotonic() - started < seconds:
            await self._slots.acquire()
            task = asyncio.create_task(self._one(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self.submitted += 1
            await asyncio.sleep(max(0.0, started + self.submitted / self._rate - time.monotonic()))
        await asyncio.gather(*self._tasks)

    async def _one(self, request: build_control_pb2.SubmitBuildRequest) -> None:
        try:
            build = (await self._stub.SubmitBuild(request, timeout=30)).build
            await asyncio.sleep(1.0)
            call = self._stub.Cancel(
                build_control_pb2.CancelRequest(build_id=build.build_id, reason="soak"),
                timeout=60,
            )
            async for _ in call:
                pass
            self.canceled += 1
        except grpc.aio.AioRpcError:
            self.errors += 1
        finally:
            self._slots.release()


def sample(server: ServerProcess, minute: float, load: Load) -> dict[str, Any]:
    return {
        "minute": round(minute, 2),
        "rss_mib": server.rss_bytes() / 2**20,
        "open_fds": open_fds(server.pid),
        "live_actors": server.metric("buildcontrol_live_build_actors"),
        "database_mib": database_bytes(server.data_dir) / 2**20,
        "builds_stored": server.metric("buildcontrol_store_table_rows", {"table": "builds"}),
        "audit_stored": server.metric("buildcontrol_store_table_rows", {"table": "cancel_audit"}),
        "submitted": load.submitted,
        "canceled": load.canceled,
        "errors": load.errors,
        "load_average": os.getloadavg()[0],
    }


def verdict(samples: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    after = [s for s in samples if s["minute"] >= args.warmup_minutes]
    if len(after) < 2:
        return {"ok": False, "why": ["too few samples after the warm-up: run longer"]}
    first, last = after[0], after[-1]
    why = []
    rss = last["rss_mib"] - first["rss_mib"]
    if rss > RSS_BOUND_MIB:
        why.append(f"RSS grew {rss:.1f} MiB after the warm-up (bound {RSS_BOUND_MIB})")
    fds = last["open_fds"] - first["open_fds"]
    if fds > FDS_BOUND:
        why.append(f"open fds grew by {fds} (bound {FDS_BOUND})")
    actors = max(s["live_actors"] for s in after)
    if actors > 2 * args.in_flight:
        why.append(f"{actors:.0f} live actors (bound {2 * args.in_flight})")
    factor, slack = DATABASE_BOUND
    if last["database_mib"] > first["database_mib"] * factor + slack:
        why.append(
            f"database grew {first['database_mib']:.1f} → {last['database_mib']:.1f} MiB"
            f" (bound x{factor} + {slack} MiB)"
        )
    if last["errors"]:
        why.append(f"{last['errors']} calls failed")
    return {
        "ok": not why,
        "why": why,
        "rss_growth_mib": rss,
        "fds_growth": fds,
        "max_live_actors": actors,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    audit_days = args.retain_audit_seconds / 86_400
    server = await start_server(
        "--retain-builds-max", str(args.retain_builds_max),
        "--retain-audit-days", f"{audit_days:.8f}",
        "--housekeeping-interval", str(args.housekeeping_interval),
    )  # fmt: skip
    fleet = await Fleet.start(server.target)
    samples: list[dict[str, Any]] = []
    try:
        await fleet.connect(args.agents, args.capacity, PUSH, "soak")
        async with grpc.aio.insecure_channel(server.target) as channel:
            load = Load(build_control_pb2_grpc.BuildControlStub(channel), args)
            started = time.monotonic()
            running = asyncio.create_task(load.run(args.minutes * 60))
            samples.append(sample(server, 0.0, load))
            while not running.done():
                await asyncio.wait({running}, timeout=args.sample_seconds)
                row = sample(server, (time.monotonic() - started) / 60, load)
                samples.append(row)
                print(_row(row), flush=True)
            await running
    finally:
        await fleet.close()
        await server.stop()
    return {"machine": machine(), "args": vars(args), "samples": samples} | {
        "verdict": verdict(samples, args)
    }


_COLUMNS = ("minute", "rss_mib", "open_fds", "live_actors", "database_mib", "builds_stored")
_MORE = ("audit_stored", "canceled", "load_average")


def _row(row: dict[str, Any]) -> str:
    return "".join(f"{row[c]:>14.1f}" for c in (*_COLUMNS, *_MORE))


if __name__ == "__main__":
    arguments = parse_args()
    print(f"soak: {arguments.minutes:g} min at {arguments.rate:g} builds/s ({machine()})")
    print("".join(f"{c:>14}" for c in (*_COLUMNS, *_MORE)), flush=True)
    outcome = asyncio.run(main(arguments))
    path = RESULTS / f"{arguments.name}.json"
    path.write_text(json.dumps(outcome, indent=2))
    result = outcome["verdict"]
    print(f"\nresults: {path}")
    print("soak " + ("passed" if result["ok"] else "FAILED: " + "; ".join(result["why"])))
    sys.exit(0 if result["ok"] else 1)
