"""The replicas scenario's pure parts: which way a cancel went, which builds each
measure takes, and the numbers its targets read. No I/O, so that tests/tools can check
them.

A cancel's path is named by three replicas: the build's **owner** (its shard's lease),
the **receiver** the Cancel was sent to, and the **holder** of the stream of the agent
running its job, at the moment the Cancel was sent:

  direct     owner = receiver = holder: the one-server path (no table hop)
  worst      receiver = holder ≠ owner: receiver → owner's build inbox → owner's
             agent outbox → receiver (the holder) → agent
  forwarded  receiver ≠ owner = holder: receiver → owner's inbox → owner → agent
  outbox     receiver = owner ≠ holder: owner → agent outbox → holder → agent

With two replicas these are all the cases; with more, a receiver, owner and holder
all different is `three-way`."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DIRECT, WORST, FORWARDED, OUTBOX, THREE_WAY = (
    "direct", "worst", "forwarded", "outbox", "three-way",
)  # fmt: skip
PATHS = (DIRECT, WORST, FORWARDED, OUTBOX, THREE_WAY)


def path_of(owner: str, receiver: str, holder: str) -> str:
    if owner == receiver == holder:
        return DIRECT
    if receiver == holder:
        return WORST
    if owner == holder:
        return FORWARDED
    if owner == receiver:
        return OUTBOX
    return THREE_WAY


@dataclass(frozen=True)
class Placed:
    """A running build of one job: who owns it and which replica holds its agent."""

    build_id: str
    job_id: str
    owner: str
    holder: str


def placed(
    jobs: Mapping[str, str], owners: Mapping[str, str], holders: Mapping[str, str]
) -> list[Placed]:
    """`jobs` {job_id: build_id}, `owners` {build_id: replica}, `holders` {job_id:
    replica}: every build found in all three, in build id order."""
    found = [
        Placed(build, job, owners[build], holders[job])
        for job, build in jobs.items()
        if build in owners and job in holders
    ]
    return sorted(found, key=lambda p: p.build_id)


@dataclass(frozen=True)
class Plan:
    """Which builds each measure of a round cancels (disjoint), and where to."""

    failover: list[Placed]  # owned by the replica that is killed; sent to the survivor
    worst: list[Placed]  # sent to their holder, which does not own them
    direct: list[Placed]  # sent to their owner, which holds their agent
    throughput: list[Placed]  # sent round robin over the replicas, as a balancer does
    routed: list[Placed]  # sent to their owner, by a client that knows it


def plan(builds: Sequence[Placed], victim: str, sizes: Mapping[str, int], seed: int = 15) -> Plan:
    """Draw each measure's builds (`sizes`: failover, worst, direct, throughput,
    routed), at
    random so that no measure gets the agents of one end of the fleet. The failover's
    are the victim's: half with their agent on the survivor, half on the victim (those
    agents reconnect after the kill). Too few builds for a measure is an error."""
    rng = random.Random(seed)
    left = list(builds)
    rng.shuffle(left)
    half = sizes["failover"] // 2
    crossed = _take(left, half, lambda b: b.owner == victim != b.holder, "failover, crossed")
    at_home = _take(
        left, sizes["failover"] - half, lambda b: b.owner == victim == b.holder, "failover"
    )
    left = [b for b in left if b not in crossed + at_home]
    worst = _take(left, sizes["worst"], lambda b: b.owner != b.holder, "worst")
    left = [b for b in left if b not in worst]
    direct = _take(left, sizes["direct"], lambda b: b.owner == b.holder, "direct")
    left = [b for b in left if b not in direct]
    throughput = _take(left, sizes["throughput"], lambda b: True, "throughput")
    left = [b for b in left if b not in throughput]
    routed = _take(left, sizes["routed"], lambda b: True, "routed")
    return Plan(crossed + at_home, worst, direct, throughput, routed)


def _take(
    builds: list[Placed], count: int, fits: Callable[[Placed], bool], measure: str
) -> list[Placed]:
    chosen = [b for b in builds if fits(b)][:count]
    if len(chosen) < count:
        raise ValueError(f"{len(chosen)} builds for the {measure} cancels, {count} wanted")
    return chosen


def round_robin(builds: Sequence[Placed], replicas: Sequence[str]) -> list[tuple[Placed, str]]:
    """Each build with the replica its Cancel goes to: the next one in turn."""
    return [(build, replicas[i % len(replicas)]) for i, build in enumerate(builds)]


def path_counts(sent: Iterable[tuple[Placed, str]]) -> dict[str, int]:
    counts = dict.fromkeys(PATHS, 0)
    for build, receiver in sent:
        counts[path_of(build.owner, receiver, build.holder)] += 1
    return {path: n for path, n in counts.items() if n}


def first_after(moments: Iterable[float], start: float) -> float | None:
    """Seconds from `start` to the earliest of `moments` (None: there is none)."""
    found = list(moments)
    return min(found) - start if found else None


# ---- what the targets read from a round (None: the scenario did not run) ----


def _two(results: Mapping[str, Any]) -> Mapping[str, Any] | None:
    found = results.get("replicas")
    return None if found is None else found["two"]


def stop_ms(path: str, percentile: str) -> Any:
    """Reader of the two replicas' Cancel → StopJob of `path` ('p50_ms', 'p99_ms')."""

    def read(results: Mapping[str, Any]) -> float | None:
        two = _two(results)
        return None if two is None else float(two["paths"][path]["cancel_to_stop"][percentile])

    return read


def direct_over_one(percentile: str) -> Any:
    """Reader of the same-replica path's Cancel → StopJob over the one server's, in
    the same round."""

    def read(results: Mapping[str, Any]) -> float | None:
        found = results.get("replicas")
        if found is None:
            return None
        two = found["two"]["paths"][DIRECT]["cancel_to_stop"][percentile]
        return float(two / found["one"]["cancel_to_stop"][percentile])

    return read


def cancels_two_over_one(results: Mapping[str, Any]) -> float | None:
    found = results.get("replicas")
    if found is None:
        return None
    two, one = found["two"]["throughput"], found["one"]["throughput"]
    return float(two["cancels_per_s"] / one["cancels_per_s"])


def failover_first_stop_s(results: Mapping[str, Any]) -> float | None:
    two = _two(results)
    if two is None or two["failover"]["first_stop_s"] is None:
        return None
    return float(two["failover"]["first_stop_s"])
