"""The benchmarks, against the real server process on 127.0.0.1: the floor before and
after, every chosen scenario once per round (3 rounds, interleaved), every target a
ratio to the floor (scenarios.py registers them, report.py prints the table).

  1 latency     200 agents, 2,500 running builds, 2,000 single cancels one after another:
                Cancel sent → StopJob received, Cancel sent → terminal message
  2 throughput  Cancel RPCs at rising concurrency → sustained cancels per second
  3 burst       5,000 running builds x 2 jobs, one CancelBuilds → time until all are
                CANCELED, commits used
  4 poll        scenario 1 (1,000 builds, 500 cancels) again with agents that poll
                GetBuild every 2 s and ignore pushed stops → the ratio of medians
  5 memory      server RSS with 0 and 1,000 idle agent streams, 0 and 10,000 live
                builds → bytes per stream and per build
  agentstop     6: a real agent with real `sleep` steps and a few hundred idle processes:
                Cancel → step process dead (pidfd) and → CANCELED, 1 build and 50 at
                once, with the agent's own share (agent_stop.py)
  loops         scenarios 1 and 2 (fewer levels) on a server running asyncio's event
                loop and one running uvloop, in turn → is uvloop worth adopting
  purge         single cancels while a retention purge of 200,000 finished builds runs,
                beside the same cancels on the quiet server → ratio (purge.py)
  replicas      2 replicas on one PostgreSQL beside 1 PostgreSQL server, 200 agents,
                1,000 builds: Cancel → StopJob on the worst path (receiver = agent's
                holder ≠ owner) and the same-replica one, cancels/s, SIGKILL failover
                (replicas.py)

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

import backends
import floor
import machine_load
import ratios
import scenarios
from buildcontrol_server.version import version
from loops import LOOPS, install_loop
from plot import latency_plot
from report import table
from stats import RESULTS, machine, write_json


def _levels(text: str) -> list[tuple[int, int]]:
    """ "1:500,4:1000" → [(1, 500), (4, 1000)]: concurrency and cancels per level."""
    pairs = []
    for part in text.split(","):
        concurrency, count = part.split(":")
        pairs.append((int(concurrency), int(count)))
    return pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=scenarios.NAMES, default=list(scenarios.NAMES))
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=50, help="job slots per agent")
    parser.add_argument("--builds", type=int, default=2500, help="running builds (1)")
    # 2,000: the p99 of 500 is the 5th-slowest cancel, and one stall of the shared disk
    # moved it 1.06x-1.62x of SQLite's from round to round (PostgreSQL, session 10).
    parser.add_argument("--cancels", type=int, default=2000, help="single cancels (1)")
    # Each running build on a polling agent is one GetBuild per --poll-interval.
    parser.add_argument("--poll-builds", type=int, default=1000, help="running builds (4)")
    parser.add_argument("--poll-cancels", type=int, default=500, help="single cancels (4)")
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
        "--rounds", type=int, default=3, help="rounds of every scenario, interleaved"
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
    # 1,000: the p99 of 300 lone cancels on the quiet server alone varied 2.3-3.3 ms
    # from run to run, as wide as the target's margin.
    parser.add_argument("--purge-cancels", type=int, default=1000, help="(purge) per phase")
    parser.add_argument(
        "--purge-history-file",
        type=Path,
        default=None,
        help="(purge) a copy of the pre-filled history: reused when it holds --purge-builds"
        " builds, else written after pre-filling (a million builds take minutes to write)",
    )
    parser.add_argument(
        "--purge-cancels-only",
        action="store_true",
        help="(purge) stop the server once the cancels are measured instead of waiting for"
        " the purge to end (seconds instead of minutes; no purge time, no rows purged)",
    )
    parser.add_argument("--replicas-agents", type=int, default=200, help="(replicas)")
    parser.add_argument("--replicas-builds", type=int, default=1000, help="(replicas) running")
    parser.add_argument(
        "--replicas-cancels", type=int, default=200, help="(replicas) single cancels per path"
    )
    parser.add_argument(
        "--replicas-level",
        type=lambda text: _levels(text)[0],
        default=(16, 250),
        help="(replicas) throughput, concurrency:cancels (a level to any replica, one to"
        " the owners)",
    )
    parser.add_argument(
        "--replicas-failover", type=int, default=20, help="(replicas) builds of the killed one"
    )
    parser.add_argument(
        "--replicas-lease", type=float, default=4.0, help="(replicas) --replicas-lease, s"
    )
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        if args.name == "cancel_bench":
            # bench/results/.gitignore keeps them out of commits
            args.name = "quick" if args.backend == "sqlite" else "quick_backends"
        # Every scenario and the floor once, in well under a minute (CI runs it).
        args.agents, args.capacity, args.builds, args.cancels = 10, 50, 50, 20
        args.poll_builds, args.poll_cancels = 50, 20
        args.poll_interval, args.poll_pace_ms = 0.5, 10.0
        args.levels, args.loop_levels = _levels("1:20,16:100"), _levels("16:50")
        args.burst_builds, args.memory_agents, args.memory_builds = 100, 20, 200
        args.stop_rounds, args.stop_burst, args.stop_burst_rounds = 5, 5, 1
        args.idle_processes, args.rounds = 10, 1
        args.purge_builds, args.purge_cancels = 5_000, 30
        args.replicas_agents, args.replicas_builds, args.replicas_cancels = 10, 60, 10
        args.replicas_level, args.replicas_failover, args.replicas_lease = (4, 15), 4, 1.0
    args.floor_sizes = floor.QUICK_SIZES if args.quick else floor.FloorSizes()
    return args


async def measure_floor(args: argparse.Namespace, when: str, postgres: dict[str, str]) -> Any:
    print(f"floor ({when} the scenarios): bare grpc.aio, SQLite ...", flush=True)
    return await floor.measure(args.floor_sizes, args.load_loop, postgres)


async def run_rounds(
    args: argparse.Namespace,
    chosen: list[scenarios.Scenario],
    postgres: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The floor, every chosen scenario once per round (interleaved: round 1 of each,
    then round 2 of each, ...), the floor again; the machine's load around it all."""
    load = machine_load.snapshot()
    before = await measure_floor(args, "before", postgres or {})
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        print(f"== round {number + 1} of {args.rounds}", flush=True)
        results: dict[str, Any] = {"seconds": {}}
        round_load = machine_load.snapshot()
        for scenario in chosen:
            started = time.monotonic()
            await scenario.run(args, results)
            results["seconds"]["+".join(scenario.names)] = time.monotonic() - started
        results["load"] = machine_load.between(round_load, machine_load.snapshot())
        rounds.append(results)
    after = await measure_floor(args, "after", postgres or {})
    return {
        "load": machine_load.between(load, machine_load.snapshot()),
        "floor": {
            "before": before,
            "after": after,
            "used": ratios.combine_floors(before["measures"], after["measures"]),
            "drift": ratios.drift(before["measures"], after["measures"]),
        },
        "rounds": rounds,
    }


def describe_run(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "version": version(),
        "machine": machine(),
        "server_loop": args.loop or "server default",
        "load_loop": args.load_loop,
        "agents": args.agents,
        "poll_interval": args.poll_interval,
        "loop_levels": args.loop_levels,
        "judged": not args.quick,
    }


async def backend_comparison(args: argparse.Namespace) -> dict[str, Any]:
    """Scenarios 1-3 on each backend in turn, round after round, with the PostgreSQL
    floors (bare commit, NOTIFY → LISTEN) measured before and after; then the table."""
    args.only = [name for name in args.only if name in ("latency", "throughput", "burst")]
    started = time.monotonic()
    with backends.postgres_server() as postgres:
        urls = backends.floor_urls(postgres)
        chosen = [backends.scenario(postgres, name) for name in backends.COMPARED]
        outcome = await run_rounds(args, chosen, urls)
    by_backend = backends.by_backend(outcome["rounds"])
    return {
        **describe_run(args),
        "burst": f"{args.burst_builds} builds x {args.burst_jobs} jobs",
        **outcome,
        "comparison": backends.comparison(by_backend, outcome["floor"]["used"]),
        "wall_seconds": time.monotonic() - started,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    chosen = scenarios.selected(args.only)
    outcome = {**describe_run(args), **await run_rounds(args, chosen)}
    outcome["targets"] = ratios.evaluate_all(
        scenarios.all_targets(chosen), outcome["rounds"], outcome["floor"]["used"]
    )
    outcome["wall_seconds"] = time.monotonic() - started
    return outcome


if __name__ == "__main__":
    arguments = parse_args()
    install_loop(arguments.load_loop)
    if arguments.backend == "postgresql":
        compared = asyncio.run(backend_comparison(arguments))
        print()
        print(backends.comparison_table(compared))
        name = "backends" if arguments.name == "cancel_bench" else arguments.name
        print(f"\nresults: {write_json(name, compared)}")
        sys.exit(0)
    outcome = asyncio.run(main(arguments))
    print()
    print(table(outcome, scenarios.selected(arguments.only)))
    json_path = write_json(arguments.name, outcome)
    last = {**outcome, **outcome["rounds"][-1]}
    png_path = latency_plot(last, RESULTS / f"{arguments.name}_latency.png")
    print(f"\nresults: {json_path}" + (f"\nplot:    {png_path}" if png_path else ""))
