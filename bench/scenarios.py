"""Every scenario of `bench/run.py`, registered with its targets.

A scenario is one entry of SCENARIOS: the `--only` names it answers to, a coroutine
that runs one round of it and puts its results into that round's dict, its targets
(ratios.Target: what to read from the round, which floor measure it is a multiple of,
the limit), and optionally the lines it adds to the detail table. run.py measures the
floor before and after, runs every selected scenario once per round, round after
round (interleaved), and report.py prints the median, spread and ratio of each target.

Adding one (see bench/README.md): write its module with `async def run(args, results)`,
give its targets a floor from floor.py, append a Scenario here."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import agent_stop
import burst
import latency
import log_flood
import memory
import purge
import replicas
import targets
import throughput
from fleet_control import Fleet
from load_agent import POLL, PUSH
from loops import LOOPS
from ratios import Target
from server_process import start_server

Round = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    names: tuple[str, ...]  # the `--only` choices it answers to
    run: Callable[[argparse.Namespace, Round], Awaitable[None]]  # one round, into the dict
    targets: tuple[Target, ...] = ()
    details: Callable[[Round], list[str]] | None = None  # its lines of the detail table


async def push_scenarios(
    args: argparse.Namespace, results: Round, store: list[str] | None = None
) -> None:
    """1, 2, 3 on one server and one fleet of push agents, in turn. `store`: the
    server's --store flags (none: SQLite)."""
    wanted = set(args.only)
    slots = args.agents * args.capacity
    needed = max(
        args.builds, sum(count for _, count in args.levels), args.burst_builds * args.burst_jobs
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


async def poll_scenario(args: argparse.Namespace, results: Round) -> None:
    print(f"4 poll: {args.poll_builds} builds, {args.poll_cancels} cancels (poll) ...", flush=True)
    server = await start_server(loop=args.loop, profile_dir=args.profile_dir)
    fleet = await Fleet.start(server.target, args.load_loop)
    try:
        await fleet.connect(args.agents, args.capacity, POLL, "poll", args.poll_interval)
        results["latency_poll"] = await latency.run(
            server, fleet, POLL, args.poll_builds, args.poll_cancels,
            pace=args.poll_pace_ms / 1000, free_slots=False,
        )  # fmt: skip
    finally:
        await fleet.close()
        await server.stop()


async def memory_scenarios(args: argparse.Namespace, results: Round) -> None:
    print(
        f"5 memory: {args.memory_agents} idle agents, {args.memory_builds} live builds ...",
        flush=True,
    )
    results["memory"] = {
        "agents": await memory.per_agent_stream(args.memory_agents, args.loop, args.load_loop),
        "bare_agents": await memory.per_bare_agent_stream(args.memory_agents, args.load_loop),
        "builds": await memory.per_live_build(args.memory_builds, args.loop),
    }


async def agent_stop_scenario(args: argparse.Namespace, results: Round) -> None:
    print(
        f"6 agent stop: {args.stop_rounds} single cancels, {args.stop_burst_rounds} x"
        f" {args.stop_burst} at once, {args.idle_processes} idle processes ...",
        flush=True,
    )
    runs = [("agent_stop_baseline", args.stop_baseline)] if args.stop_baseline else []
    for key, client in [*runs, ("agent_stop", None)]:
        server = await start_server(loop=args.loop, profile_dir=args.profile_dir)
        try:
            results[key] = await agent_stop.run(
                server, args.stop_rounds, args.stop_burst, args.stop_burst_rounds,
                args.idle_processes, client,
                bulk=None if client else (args.burst_builds, args.burst_jobs),
            )  # fmt: skip
        finally:
            await server.stop()


async def loop_comparison(args: argparse.Namespace, results: Round) -> None:
    """Scenario 1 and a few levels of 2 on each event loop, one server after the other."""
    rows: dict[str, list[dict[str, Any]]] = {loop: [] for loop in LOOPS}
    for loop in LOOPS:
        print(f"loops: server on {loop} ...", flush=True)
        server = await start_server(loop=loop)
        fleet = await Fleet.start(server.target, args.load_loop)
        try:
            await fleet.connect(args.agents, args.capacity, PUSH, f"loop-{loop}")
            single = await latency.run(server, fleet, PUSH, args.builds, args.cancels, pace=None)
            rising = await throughput.run(server, fleet, args.loop_levels)
        finally:
            await fleet.close()
            await server.stop()
        best = rising["best_level"]
        rows[loop].append(
            {
                "stop_p50_ms": single["cancel_to_stop"]["p50_ms"],
                "stop_p99_ms": single["cancel_to_stop"]["p99_ms"],
                "terminal_p50_ms": single["cancel_to_terminal"]["p50_ms"],
                "best_cancels_per_s": best["cancels_per_s"],
                "best_concurrency": best["concurrency"],
                # Fairer than the rate on a machine whose other users take a share.
                "cancels_per_server_cpu_s": best["cancels_per_s"] / best["cpu_share"]["server"],
            }
        )
    results["loops"] = rows


def _agent_stop_details(results: Round) -> list[str]:
    lines = [
        agent_stop.table(results[key])
        for key in ("agent_stop_baseline", "agent_stop")
        if key in results
    ]
    return [*lines, agent_stop.targets_table(results["agent_stop"])]


async def purge_scenario(args: argparse.Namespace, results: Round) -> None:
    print(f"purge: {args.purge_builds} finished builds, {args.purge_cancels} x 2 cancels")
    results["purge"] = await purge.run(
        args.purge_builds,
        args.purge_cancels,
        args.agents,
        args.capacity,
        args.purge_history_file,
        wait_for_purge=not args.purge_cancels_only,
    )


def purge_worst_ratio(results: Round) -> float | None:
    """The worst of the cancel latencies during the purge over the same without it
    (a ratio within the round: the quiet server is its floor)."""
    found = results.get("purge")
    if found is None:
        return None
    return max(ratio for measure in found["ratio"].values() for ratio in measure.values())


PURGE_TARGETS = (
    Target(
        "purge_worst_ratio", "purge: cancel latency during ÷ quiet (worst)",
        purge_worst_ratio, (), purge.TARGET_RATIO, unit="x",
    ),
)  # fmt: skip


async def log_flood_scenario(args: argparse.Namespace, results: Round) -> None:
    """Floods of step output beside cancels, on one real agent (log_flood.py)."""
    results["logflood"] = await log_flood.run(log_flood.parse_args(["--quick"] * args.quick))
    log_flood.print_report(results["logflood"])


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        ("latency", "throughput", "burst"),
        push_scenarios,
        targets.LATENCY + targets.THROUGHPUT + targets.BURST,
    ),
    Scenario(("poll",), poll_scenario, targets.POLL),
    Scenario(("memory",), memory_scenarios, targets.MEMORY),
    Scenario(
        ("agentstop",),
        agent_stop_scenario,
        targets.AGENT_STOP + targets.CANCEL_BUILDS,
        _agent_stop_details,
    ),
    Scenario(("loops",), loop_comparison, targets.LOOPS),
    Scenario(("purge",), purge_scenario, PURGE_TARGETS, lambda r: [purge.table(r["purge"])]),
    Scenario(("logflood",), log_flood_scenario, targets.LOG_FLOOD),
    Scenario(("replicas",), replicas.run, replicas.TARGETS, replicas.details),
)

NAMES = tuple(name for scenario in SCENARIOS for name in scenario.names)


def selected(only: list[str]) -> list[Scenario]:
    return [scenario for scenario in SCENARIOS if set(scenario.names) & set(only)]


def all_targets(chosen: list[Scenario]) -> list[Target]:
    return [target for scenario in chosen for target in scenario.targets]
