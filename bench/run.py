"""Benchmarks of issue 8 against the real server process on 127.0.0.1.

  1 latency     200 agents, 1,000 running builds, 500 single cancels one after another:
                Cancel sent → StopJob received, Cancel sent → terminal message
  2 throughput  Cancel RPCs at rising concurrency → sustained cancels per second
  3 burst       5,000 running builds x 2 jobs, one CancelBuilds → time until all are
                CANCELED, commits used
  4 poll        scenario 1 again with agents that poll GetBuild every 2 s and ignore
                pushed stops → the ratio of medians
  5 memory      server RSS with 0 and 1,000 idle agent streams, 0 and 10,000 live
                builds → bytes per stream and per build
  agentstop     6: a real agent with real `sleep` steps and a few hundred idle processes:
                Cancel → step process dead (pidfd) and → CANCELED, 1 build and 50 at
                once, with the agent's own share (agent_stop.py)
  logflood      50 jobs flooding output, 200 idle cancelled in turn (log_flood.py)
  loops         scenarios 1 and 2 (fewer levels) on a server running asyncio's event
                loop and one running uvloop, in turn → is uvloop worth adopting
  purge         single cancels while a retention purge of 200,000 finished builds runs,
                beside the same cancels on the quiet server → ratio (purge.py)

--backend postgresql: scenarios 1-3 on SQLite, then on PostgreSQL, one table of both
(backends.py); `make bench BACKEND=postgresql`.

Agents run in their own process (fleet.py), one gRPC connection each; Cancels are sent
from this process. Prints a table (with the machine's cores), writes
bench/results/cancel_bench.json and bench/results/cancel_latency_push_vs_poll.png.

Run: make bench   (or .venv/bin/python bench/run.py --help; --quick for a smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import agent_stop
import backends
import burst
import latency
import log_flood
import memory
import purge
import throughput
from fleet_control import Fleet
from load_agent import POLL, PUSH
from loops import LOOPS, install_loop
from plot import latency_plot
from report import checks, loop_ratio, table
from server_process import start_server
from stats import RESULTS, machine, write_json

SCENARIOS = (
    "latency", "throughput", "burst", "poll", "memory", "agentstop", "loops", "purge",
    "logflood",
)  # fmt: skip


def _levels(text: str) -> list[tuple[int, int]]:
    """ "1:500,4:1000" → [(1, 500), (4, 1000)]: concurrency and cancels per level."""
    pairs = []
    for part in text.split(","):
        concurrency, count = part.split(":")
        pairs.append((int(concurrency), int(count)))
    return pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=50, help="job slots per agent")
    parser.add_argument("--builds", type=int, default=1000, help="running builds (1, 4)")
    parser.add_argument("--cancels", type=int, default=500, help="single cancels (1, 4)")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds (4)")
    parser.add_argument(
        "--poll-pace-ms",
        type=float,
        default=40.0,
        help="(4) a cancel starts every this many ms: one after another, without waiting"
        " ~1 s for each",
    )
    parser.add_argument(
        "--levels",
        type=_levels,
        default=_levels("1:500,4:1000,16:2000,64:2000,256:2000"),
        help="(2) concurrency:cancels,...",
    )
    parser.add_argument(
        "--loop-levels",
        type=_levels,
        default=_levels("16:2000,64:2000"),
        help="(loops) throughput levels run on each event loop",
    )
    parser.add_argument(
        "--loop-rounds", type=int, default=1, help="(loops) asyncio, uvloop: this many times"
    )
    parser.add_argument("--burst-builds", type=int, default=5000)
    parser.add_argument("--burst-jobs", type=int, default=2)
    parser.add_argument("--memory-agents", type=int, default=1000)
    parser.add_argument("--memory-builds", type=int, default=10_000)
    parser.add_argument(
        "--loop", choices=LOOPS, default=None, help="server's event loop (default: its own)"
    )
    parser.add_argument(
        "--load-loop", choices=LOOPS, default="asyncio", help="event loop of agents and client"
    )
    parser.add_argument("--stop-rounds", type=int, default=100, help="(6) single cancels")
    parser.add_argument("--stop-burst", type=int, default=50, help="(6) builds cancelled at once")
    parser.add_argument("--stop-burst-rounds", type=int, default=3, help="(6) bursts")
    parser.add_argument("--idle-processes", type=int, default=300, help="(6) unrelated ones")
    parser.add_argument(
        "--stop-baseline",
        type=Path,
        metavar="DIR",
        help="(6) first run it with the buildcontrol_client found in DIR (side by side)",
    )
    parser.add_argument(
        "--backend",
        choices=backends.BACKENDS,
        default="sqlite",
        help="postgresql: scenarios 1-3 on SQLite and on PostgreSQL, side by side",
    )
    parser.add_argument("--name", default="cancel_bench", help="results file name")
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="sample the server with py-spy during each measured phase; collapsed stacks"
        " go to DIR/PHASE.txt",
    )
    parser.add_argument("--purge-builds", type=int, default=200_000, help="(purge) history")
    parser.add_argument("--purge-cancels", type=int, default=300, help="(purge) per phase")
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        if args.name == "cancel_bench":
            args.name = "quick"  # bench/results/.gitignore keeps it out of commits
        args.agents, args.capacity, args.builds, args.cancels = 20, 50, 100, 50
        args.poll_pace_ms = 20.0
        args.levels = args.loop_levels = _levels("1:50,16:200")
        args.burst_builds, args.memory_agents, args.memory_builds = 200, 50, 500
        args.stop_rounds, args.stop_burst, args.stop_burst_rounds = 10, 10, 1
        args.purge_builds, args.purge_cancels = 5_000, 30
    return args


async def push_scenarios(
    args: argparse.Namespace, results: dict[str, Any], store: list[str] | None = None
) -> None:
    """1, 2, 3 on one server and one fleet of push agents, in turn. `store`: the
    server's --store flags (none: SQLite)."""
    wanted = set(args.only)
    if not wanted & {"latency", "throughput", "burst"}:
        return
    slots = args.agents * args.capacity
    needed = max(
        args.builds,
        sum(count for _, count in args.levels),
        args.burst_builds * args.burst_jobs,
    )
    assert slots >= needed, f"{slots} agent slots, a scenario needs {needed}"
    server = await start_server(*(store or []), loop=args.loop, profile_dir=args.profile_dir)
    fleet = await Fleet.start(server.target, args.load_loop)
    try:
        await fleet.connect(args.agents, args.capacity, PUSH, "push")
        if "latency" in wanted:
            print(f"1 latency: {args.builds} builds, {args.cancels} cancels (push) ...", flush=True)
            results["latency_push"] = await latency.run(
                server, fleet, PUSH, args.builds, args.cancels, pace=None
            )
        if "throughput" in wanted:
            print(f"2 throughput: levels {args.levels} ...", flush=True)
            results["throughput"] = await throughput.run(server, fleet, args.levels)
        if "burst" in wanted:
            print(f"3 burst: {args.burst_builds} x {args.burst_jobs} jobs ...", flush=True)
            results["burst"] = await burst.run(server, fleet, args.burst_builds, args.burst_jobs)
    finally:
        await fleet.close()
        await server.stop()


async def poll_scenario(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if "poll" not in args.only:
        return
    print(f"4 poll: {args.builds} builds, {args.cancels} cancels (poll) ...", flush=True)
    server = await start_server(loop=args.loop, profile_dir=args.profile_dir)
    fleet = await Fleet.start(server.target, args.load_loop)
    try:
        await fleet.connect(args.agents, args.capacity, POLL, "poll", args.poll_interval)
        results["latency_poll"] = await latency.run(
            server,
            fleet,
            POLL,
            args.builds,
            args.cancels,
            pace=args.poll_pace_ms / 1000,
            free_slots=False,
        )
    finally:
        await fleet.close()
        await server.stop()


async def agent_stop_scenario(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if "agentstop" not in args.only:
        return
    print(
        f"6 agent stop: {args.stop_rounds} single cancels, {args.stop_burst_rounds} x"
        f" {args.stop_burst} at once, {args.idle_processes} idle processes ...",
        flush=True,
    )
    runs = [("agent_stop_baseline", args.stop_baseline)] if args.stop_baseline else []
    for key, client in [*runs, ("agent_stop", None)]:
        server = await start_server(loop=args.loop)
        try:
            results[key] = await agent_stop.run(
                server,
                args.stop_rounds,
                args.stop_burst,
                args.stop_burst_rounds,
                args.idle_processes,
                client,
                bulk=None if client else (args.burst_builds, args.burst_jobs),
            )
        finally:
            await server.stop()


async def loop_comparison(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Scenario 1 and a few levels of 2 on each event loop, one server after the other
    (side by side in one run: the machine is shared, ratios hold better than times)."""
    if "loops" not in args.only:
        return
    rounds: dict[str, list[dict[str, Any]]] = {loop: [] for loop in LOOPS}
    for round_number in range(args.loop_rounds):
        for loop in LOOPS:
            print(f"loops: round {round_number + 1}, server on {loop} ...", flush=True)
            server = await start_server(loop=loop)
            fleet = await Fleet.start(server.target, args.load_loop)
            try:
                await fleet.connect(args.agents, args.capacity, PUSH, f"loop-{loop}")
                single = await latency.run(
                    server, fleet, PUSH, args.builds, args.cancels, pace=None
                )
                rising = await throughput.run(server, fleet, args.loop_levels)
            finally:
                await fleet.close()
                await server.stop()
            best = rising["best_level"]
            rounds[loop].append(
                {
                    "stop_p50_ms": single["cancel_to_stop"]["p50_ms"],
                    "stop_p99_ms": single["cancel_to_stop"]["p99_ms"],
                    "terminal_p50_ms": single["cancel_to_terminal"]["p50_ms"],
                    "best_cancels_per_s": best["cancels_per_s"],
                    "best_concurrency": best["concurrency"],
                    # Cancels per second of server CPU: fairer than the rate on a
                    # machine whose other users take a varying share of the cores.
                    "cancels_per_server_cpu_s": best["cancels_per_s"] / best["cpu_share"]["server"],
                }
            )
    results["loops"] = rounds
    results["loop_ratio"] = loop_ratio(rounds)


async def memory_scenarios(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if "memory" not in args.only:
        return
    print(
        f"5 memory: {args.memory_agents} idle agents, {args.memory_builds} live builds ...",
        flush=True,
    )
    results["memory"] = {
        "agents": await memory.per_agent_stream(args.memory_agents, args.loop, args.load_loop),
        "bare_agents": await memory.per_bare_agent_stream(args.memory_agents, args.load_loop),
        "builds": await memory.per_live_build(args.memory_builds, args.loop),
    }


async def backend_comparison(args: argparse.Namespace) -> dict[str, Any]:
    """Scenarios 1-3 on each backend in turn, then the table of both."""
    args.only = [name for name in args.only if name in ("latency", "throughput", "burst")]
    by_backend: dict[str, dict[str, Any]] = {}
    with backends.postgres_server() as postgres:
        for backend in backends.COMPARED:
            print(f"== backend {backend}", flush=True)
            results: dict[str, Any] = {}
            await push_scenarios(args, results, backends.store_flags(postgres, backend))
            by_backend[backend] = results
    return {
        "machine": machine(),
        "agents": args.agents,
        "burst": f"{args.burst_builds} builds x {args.burst_jobs} jobs",
        "backends": by_backend,
        "comparison": backends.comparison(by_backend),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": machine(),
        "server_loop": args.loop or "server default",
        "load_loop": args.load_loop,
        "agents": args.agents,
        "poll_interval": args.poll_interval,
        "loop_levels": args.loop_levels,
    }
    await push_scenarios(args, results)
    await poll_scenario(args, results)
    if "latency_push" in results and "latency_poll" in results:
        push, poll = results["latency_push"], results["latency_poll"]
        results["poll_ratio"] = {
            measure: poll[measure]["p50_ms"] / push[measure]["p50_ms"]
            for measure in ("cancel_to_stop", "cancel_to_terminal")
        }
        results["poll_ratio"]["stop"] = results["poll_ratio"].pop("cancel_to_stop")
        results["poll_ratio"]["terminal"] = results["poll_ratio"].pop("cancel_to_terminal")
    await memory_scenarios(args, results)
    await agent_stop_scenario(args, results)
    await loop_comparison(args, results)
    if "purge" in args.only:
        print(f"purge: {args.purge_builds} finished builds, {args.purge_cancels} x 2 cancels")
        results["purge"] = await purge.run(
            args.purge_builds, args.purge_cancels, args.agents, args.capacity
        )
    await log_flood.scenario(args, results)
    results["wall_seconds"] = time.monotonic() - started
    results["targets"] = checks(results)
    return results


if __name__ == "__main__":
    arguments = parse_args()
    install_loop(arguments.load_loop)
    if arguments.backend == "postgresql":
        compared = asyncio.run(backend_comparison(arguments))
        print()
        print(
            backends.comparison_table(
                compared["comparison"], compared["machine"], compared["burst"]
            )
        )
        name = "backends" if arguments.name == "cancel_bench" else arguments.name
        print(f"\nresults: {write_json(name, compared)}")
        sys.exit(0)
    outcome = asyncio.run(main(arguments))
    print()
    print(table(outcome))
    for key in ("agent_stop_baseline", "agent_stop"):
        if key in outcome:
            print(agent_stop.table(outcome[key]))
    if "agent_stop" in outcome:
        print(agent_stop.targets_table(outcome["agent_stop"]))
    if "purge" in outcome:
        print(purge.table(outcome["purge"]))
    json_path = write_json(arguments.name, outcome)
    png_path = latency_plot(outcome, RESULTS / f"{arguments.name}_latency.png")
    print(f"\nresults: {json_path}" + (f"\nplot:    {png_path}" if png_path else ""))
