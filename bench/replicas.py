"""The replicas scenario (`--only replicas`): two `serve --replicas on` processes on
one PostgreSQL schema beside one PostgreSQL server (`--replicas off`) in the same
round, on the same PostgreSQL (a fresh schema each), with the same fleet of load
agents and the same sizes.

One server: the agents on it, the builds running, single cancels one after another
(Cancel sent → StopJob received at the agent), then a throughput level (workers
cancelling to terminal).

Two replicas, a and b: half the agents on each, half the builds submitted to each
(a build belongs to a shard of the replica that took its submit, and runs on that
replica's agents); then every second agent of each replica reconnects to the other
(its Hello lists its jobs), so each replica still holds half the streams and about
half of each replica's builds now run on an agent the other holds. Each build's
owner (its shard's lease) and holder (agent_sessions) are read from the database,
and every measured cancel is named by its path (replicas_paths.py):

- single cancels, one after another, alternating: the worst path (sent to the
  replica holding the agent, which does not own the build) and the same-replica path
  (sent to the owner, which holds the agent);
- the throughput level, each Cancel sent to a and b in turn (a load balancer);
- failover (replicas_failover.py): SIGKILL a, cancels of a's builds sent to b."""

from __future__ import annotations

import argparse
import random
from collections.abc import Awaitable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import replicas_cluster as cluster
import replicas_failover
import replicas_paths as paths
from buildcontrol_proto.v1 import build_control_pb2_grpc
from builds import running
from fleet_control import Fleet
from latency import cancel_once
from load_agent import PUSH
from ratios import Target
from replicas_paths import Placed
from replicas_report import details
from server_process import ServerProcess, start_server
from stats import summary_ms
from throughput import level

from tests.support.postgres_server import find_bin_dir

Stub = build_control_pb2_grpc.BuildControlStub


async def run(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """One round: the one server, then the two replicas, on one PostgreSQL."""
    import backends  # here: backends imports scenarios, which imports this module

    if find_bin_dir() is None:
        print("replicas: no PostgreSQL (make postgres): not run", flush=True)
        return
    print(
        f"replicas: 1 server, then 2 replicas; {args.replicas_agents} agents,"
        f" {args.replicas_builds} builds, {args.replicas_cancels} cancels per path ...",
        flush=True,
    )
    with backends.postgres_server() as postgres:
        database = postgres.data_dir
        one = await _one_server(args, backends.store_flags(postgres, "postgresql"), database)
        two = await _two_replicas(args, backends.store_flags(postgres, "postgresql"), database)
    results["replicas"] = {"sizes": _sizes(args), "one": one, "two": two}


def _sizes(args: argparse.Namespace) -> dict[str, Any]:
    concurrency, count = args.replicas_level
    return {
        "agents": args.replicas_agents,
        "builds": args.replicas_builds,
        "cancels_per_path": args.replicas_cancels,
        "throughput_concurrency": concurrency,
        "throughput_cancels": count,
        "failover_builds": args.replicas_failover,
        "lease_s": args.replicas_lease,
    }


async def _one_server(
    args: argparse.Namespace, store: Sequence[str], database: Path
) -> dict[str, Any]:
    server = await start_server(
        *store, *cluster.COMMON_FLAGS, loop=args.loop, profile_dir=args.profile_dir
    )
    fleet = await Fleet.start(server.target, args.load_loop)
    try:
        await fleet.connect(args.replicas_agents, args.capacity, PUSH, "one")
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = Stub(channel)
            jobs = _jobs(await running(stub, fleet, args.replicas_builds, "replicas-one"))
            here = server.target  # owner, receiver and holder of every cancel
            owners, holders = dict.fromkeys(jobs.values(), here), dict.fromkeys(jobs, here)
            builds = paths.placed(jobs, owners, holders)
            random.Random(15).shuffle(builds)
            count, (concurrency, rate_count) = args.replicas_cancels, args.replicas_level
            singles = await _singles({here: stub}, fleet, [(b, here) for b in builds[:count]])
            ids = [b.build_id for b in builds[count : count + rate_count]]
            throughput = await _with_database(
                database, level(server, fleet, stub, concurrency, ids)
            )
    finally:
        await fleet.close()
        await server.stop()
    return {**_by_path(singles)[paths.DIRECT], "cancels": singles, "throughput": throughput}


@dataclass(frozen=True)
class Pair:
    """The two replicas of a round and what reaches them."""

    servers: list[ServerProcess]
    stubs: dict[str, Stub]  # by replica address
    fleet: Fleet
    url: str  # their PostgreSQL schema
    database: Path  # PostgreSQL's data directory (for its CPU time)


async def _two_replicas(
    args: argparse.Namespace, store: Sequence[str], database: Path
) -> dict[str, Any]:
    servers = await cluster.start_pair(store, args.replicas_lease, args.loop, args.profile_dir)
    fleet = await Fleet.start(servers[0].target, args.load_loop)
    try:
        half = args.replicas_agents // 2
        for prefix, replica in zip("ab", servers, strict=True):
            await fleet.connect(half, args.capacity, PUSH, prefix, target=replica.target)
        async with AsyncExitStack() as stack:
            channels = [await stack.enter_async_context(_channel(s)) for s in servers]
            stubs = {s.target: Stub(c) for s, c in zip(servers, channels, strict=True)}
            return await _measure_two(args, Pair(servers, stubs, fleet, store[1], database))
    finally:
        await fleet.close()
        for replica in servers:
            await replica.stop()


def _channel(server: ServerProcess) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(server.target)


async def _measure_two(args: argparse.Namespace, pair: Pair) -> dict[str, Any]:
    a, b = pair.servers
    builds, agents = await _placed_builds(args, pair)
    concurrency, rate_count = args.replicas_level
    sizes = {
        "failover": args.replicas_failover,
        "worst": args.replicas_cancels,
        "direct": args.replicas_cancels,
        "throughput": rate_count,
        "routed": rate_count,
    }
    plan = paths.plan(builds, a.target, sizes)
    sends = []
    for worst, direct in zip(plan.worst, plan.direct, strict=True):
        sends += [(worst, worst.holder), (direct, direct.owner)]
    singles = await _singles(pair.stubs, pair.fleet, sends)
    spread = paths.round_robin(plan.throughput, [a.target, b.target])
    throughput = await _rate(pair, concurrency, spread, "in_turn")
    routed = await _rate(pair, concurrency, [(x, x.owner) for x in plan.routed], "to_owner")
    print(f"replicas: failover, SIGKILL of {a.target} ...", flush=True)
    victims = [agent for agent, holder in agents.items() if holder == a.target]
    failover = await replicas_failover.run(
        a, b, pair.stubs[b.target], pair.fleet, plan.failover, victims
    )
    return {
        "replicas": [a.target, b.target],
        "paths": _by_path(singles),
        "cancels": singles,
        "throughput": throughput,
        "throughput_to_owner": routed,
        "failover": failover,
    }


async def _placed_builds(
    args: argparse.Namespace, pair: Pair
) -> tuple[list[Placed], dict[str, str]]:
    """Half the builds submitted to each replica and running, agents crossed; each
    build with its owner and holder, and {agent_id: replica holding its stream}."""
    (a, b), stubs, fleet = pair.servers, pair.stubs, pair.fleet
    on_a = await running(stubs[a.target], fleet, args.replicas_builds // 2, "replicas-a")
    rest = args.replicas_builds - len(on_a)
    on_b = await running(stubs[b.target], fleet, rest, "replicas-b", held_before=len(on_a))
    agents = await _cross(fleet, pair.url, pair.servers, args.replicas_agents // 2)
    jobs = _jobs({**on_a, **on_b})
    owners = await cluster.owners(pair.url, jobs.values())
    return paths.placed(jobs, owners, await fleet.placement()), agents


async def _rate(
    pair: Pair, concurrency: int, sends: list[tuple[Placed, str]], label: str
) -> dict[str, Any]:
    """A throughput level over both replicas, each Cancel to its chosen receiver."""
    receivers = cluster.Receivers({x.build_id: pair.stubs[r] for x, r in sends})
    ids = [x.build_id for x, _ in sends]
    replicas = cluster.Replicas(pair.servers, label)
    found = await _with_database(
        pair.database,
        level(replicas, pair.fleet, receivers, concurrency, ids),  # type: ignore[arg-type]
    )
    return {**found, "paths": paths.path_counts(sends)}


async def _with_database(database: Path, measured: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A throughput level's results, with PostgreSQL's CPU share beside the others'."""
    before = cluster.database_cpu_seconds(database)
    found = await measured
    used = cluster.database_cpu_seconds(database) - before
    found["cpu_share"]["database"] = used / found["seconds"]
    return found


def _jobs(by_build: dict[str, list[str]]) -> dict[str, str]:
    """{job_id: build_id} of one-job builds."""
    return {job: build for build, [job] in by_build.items()}


async def _cross(fleet: Fleet, url: str, pair: list[ServerProcess], half: int) -> dict[str, str]:
    """Every second agent of each replica reconnects to the other; once the database
    says so: {agent_id: the replica holding its stream}."""
    a, b = pair
    holders = {f"{prefix}-{i}": home.target for prefix, home in (("a", a), ("b", b))
               for i in range(half)}  # fmt: skip
    for prefix, there in (("a", b), ("b", a)):
        moving = [f"{prefix}-{i}" for i in range(1, half, 2)]
        await fleet.move(moving, there.target)
        holders.update(dict.fromkeys(moving, there.target))
    await cluster.until_held(url, holders)
    return holders


async def _singles(
    stubs: dict[str, Stub], fleet: Fleet, sends: list[tuple[Placed, str]]
) -> list[dict[str, Any]]:
    """Each build's Cancel sent to its receiver, one after another, read to its
    terminal message; each with its path and its times (ms)."""
    done = []
    for build, receiver in sends:
        done.append((build, receiver, await cancel_once(stubs[receiver], build.build_id)))
    stops = (await fleet.stops())["stops"]
    return [
        {
            "build_id": build.build_id,
            "owner": build.owner,
            "receiver": receiver,
            "holder": build.holder,
            "path": paths.path_of(build.owner, receiver, build.holder),
            "stop_ms": (stops[build.job_id] - times.sent) * 1000,
            "accepted_ms": (times.accepted - times.sent) * 1000,
            "terminal_ms": (times.terminal - times.sent) * 1000,
        }
        for build, receiver, times in done
    ]


def _by_path(cancels: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in paths.PATHS:
        mine = [c for c in cancels if c["path"] == path]
        if mine:
            found[path] = {
                f"cancel_to_{measure}": summary_ms([c[f"{measure}_ms"] / 1000 for c in mine])
                for measure in ("stop", "accepted", "terminal")
            }
    return found


# The targets, absolute on this machine (worst path p50 ≤ 10 ms, p99 ≤ 50 ms),
# converted like targets.py's over the quiet floor: unary RTT p50 ~0.71 ms (10 ms ≈
# 14x), p99 ~1.67 ms (the latency target's 10 ms ≤ 6x; 50 ms ≈ 30x). The same-replica
# path "unchanged": within the noise between two servers measured one after another
# on this shared machine (p50 ≤ 1.25x, p99 ≤ 1.5x of the one server in the same round).
__all__ = ["TARGETS", "details", "run"]

TARGETS = (
    Target(
        "replicas_worst_p50", "replicas: worst path Cancel → StopJob p50",
        paths.stop_ms(paths.WORST, "p50_ms"), ("unary_rtt_p50_ms",), 14.0,
    ),
    Target(
        "replicas_worst_p99", "replicas: worst path Cancel → StopJob p99",
        paths.stop_ms(paths.WORST, "p99_ms"), ("unary_rtt_p99_ms",), 30.0,
    ),
    Target(
        "replicas_direct_p50", "replicas: same-replica stop p50 ÷ one server",
        paths.direct_over_one("p50_ms"), (), 1.25, unit="x",
    ),
    Target(
        "replicas_direct_p99", "replicas: same-replica stop p99 ÷ one server",
        paths.direct_over_one("p99_ms"), (), 1.5, unit="x",
    ),
    Target(
        "replicas_cancels_ratio", "replicas: cancels/s, two ÷ one server",
        paths.cancels_two_over_one, (), 1.0, at_most=False, unit="x",
    ),
    Target(
        "replicas_failover_first_stop", "replicas: SIGKILL → first StopJob (s)",
        paths.failover_first_stop_s, (), None, unit="s",
    ),
)  # fmt: skip
