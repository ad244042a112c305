"""The replicas benchmark's own logic (bench/replicas_paths.py, its targets and table):
how each cancel's path is named, which builds each measure takes, and what the targets
read from a round. The benchmark itself runs in `make bench-quick`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent.parent / "bench"))

import floor
import ratios
import replicas
import replicas_paths as paths
import scenarios
from replicas_paths import Placed

A, B = "127.0.0.1:1001", "127.0.0.1:1002"


@pytest.mark.parametrize(
    ("owner", "receiver", "holder", "path"),
    [
        (A, A, A, paths.DIRECT),
        (A, B, B, paths.WORST),
        (A, B, A, paths.FORWARDED),
        (A, A, B, paths.OUTBOX),
        (A, B, "127.0.0.1:1003", paths.THREE_WAY),
    ],
)
def test_a_cancels_path_is_named_by_owner_receiver_and_holder(
    owner: str, receiver: str, holder: str, path: str
) -> None:
    assert paths.path_of(owner, receiver, holder) == path


def test_builds_are_placed_only_when_owner_and_holder_are_known() -> None:
    jobs = {"j2": "b2", "j1": "b1", "j3": "b3", "j4": "b4"}
    owners = {"b1": A, "b2": B, "b4": A}  # b3: its shard's owner unknown
    holders = {"j1": B, "j2": B, "j3": A}  # j4: its agent holds no stream

    assert paths.placed(jobs, owners, holders) == [
        Placed("b1", "j1", A, B),
        Placed("b2", "j2", B, B),
    ]


def _fleet(count: int) -> list[Placed]:
    """`count` builds of each kind: (owner, holder) in (A, A), (A, B), (B, A), (B, B)."""
    kinds = [(A, A), (A, B), (B, A), (B, B)]
    return [
        Placed(f"b{k}-{i}", f"j{k}-{i}", owner, holder)
        for k, (owner, holder) in enumerate(kinds)
        for i in range(count)
    ]


SIZES = {"failover": 4, "worst": 10, "direct": 10, "throughput": 6, "routed": 6}


def test_each_measure_gets_its_own_builds_of_the_path_it_measures() -> None:
    plan = paths.plan(_fleet(10), A, SIZES)

    measures = [plan.failover, plan.worst, plan.direct, plan.throughput, plan.routed]
    assert [len(m) for m in measures] == [4, 10, 10, 6, 6]
    ids = [b.build_id for m in measures for b in m]
    assert len(set(ids)) == len(ids)  # no build cancelled twice
    assert all(b.owner != b.holder for b in plan.worst)
    assert all(b.owner == b.holder for b in plan.direct)


def test_the_failover_cancels_the_victims_builds_half_with_agents_on_the_survivor() -> None:
    plan = paths.plan(_fleet(10), A, SIZES)

    assert all(b.owner == A for b in plan.failover)
    assert sorted(b.holder for b in plan.failover) == [A, A, B, B]


def test_the_same_seed_draws_the_same_plan() -> None:
    assert paths.plan(_fleet(10), A, SIZES) == paths.plan(_fleet(10), A, SIZES)
    assert paths.plan(_fleet(10), A, SIZES) != paths.plan(_fleet(10), A, SIZES, seed=1)


def test_too_few_builds_of_a_path_is_an_error_that_names_it() -> None:
    crossed = [Placed(f"x{i}", f"xj{i}", owner, holder)
               for i in range(3) for owner, holder in ((A, B), (B, A))]  # fmt: skip
    with_few_crossed = [b for b in _fleet(10) if b.owner == b.holder] + crossed

    # 6 crossed, 2 of them the failover's: 4 left for the worst path.
    with pytest.raises(ValueError, match=r"^4 builds for the worst cancels, 10 wanted$"):
        paths.plan(with_few_crossed, A, SIZES)


def test_a_balancer_sends_cancels_to_each_replica_in_turn_and_their_paths_are_counted() -> None:
    builds = [Placed(f"b{i}", f"j{i}", A, A) for i in range(3)] + [Placed("b9", "j9", A, B)]

    sent = paths.round_robin(builds, [A, B])

    assert [receiver for _, receiver in sent] == [A, B, A, B]
    assert paths.path_counts(sent) == {paths.DIRECT: 2, paths.WORST: 1, paths.FORWARDED: 1}


def test_the_first_moment_after_a_start_or_none() -> None:
    assert paths.first_after([12.5, 11.25, 13.0], 10.0) == 1.25
    assert paths.first_after([], 10.0) is None


def _summary(p50: float, p99: float) -> dict[str, float]:
    return {"n": 10, "p50_ms": p50, "p99_ms": p99, "max_ms": p99 + 1}


def _path(p50: float, p99: float) -> dict[str, Any]:
    return {f"cancel_to_{m}": _summary(p50, p99) for m in ("stop", "accepted", "terminal")}


def _rate(per_s: float) -> dict[str, Any]:
    return {
        "cancels": 100,
        "cancels_per_s": per_s,
        "cancel_to_terminal": _summary(20.0, 40.0),
        "cpu_share": {"server": 0.5, "database": 0.25},
        "paths": {paths.DIRECT: 50, paths.FORWARDED: 50},
    }


def _failover(first: float | None) -> dict[str, Any]:
    return {
        "builds": 20, "stops_missing": 0, "first_stop_s": first,
        "first_stop_agent_on_survivor_s": first, "first_stop_agent_reconnected_s": None,
        "last_stop_s": first, "agents_reconnected_s": 0.5, "agents_reconnected": 100,
        "all_canceled_s": 5.0, "tries": [1, 2],
    }  # fmt: skip


ROUND = {
    "replicas": {
        "sizes": {"agents": 200, "builds": 1000, "lease_s": 4.0, "throughput_concurrency": 16},
        "one": {**_path(4.0, 10.0), "throughput": _rate(200.0)},
        "two": {
            "replicas": [A, B],
            "paths": {paths.DIRECT: _path(5.0, 12.0), paths.WORST: _path(20.0, 60.0)},
            "throughput": _rate(150.0),
            "throughput_to_owner": _rate(250.0),
            "failover": _failover(4.25),
        },
    }
}


def test_the_targets_read_the_worst_path_and_the_ratios_to_the_one_server() -> None:
    assert paths.stop_ms(paths.WORST, "p50_ms")(ROUND) == 20.0
    assert paths.stop_ms(paths.WORST, "p99_ms")(ROUND) == 60.0
    assert paths.direct_over_one("p50_ms")(ROUND) == 1.25
    assert paths.direct_over_one("p99_ms")(ROUND) == 1.2
    assert paths.cancels_two_over_one(ROUND) == 0.75
    assert paths.failover_first_stop_s(ROUND) == 4.25


def test_a_round_without_the_scenario_or_without_a_stop_after_the_kill_reads_none() -> None:
    readers = [paths.stop_ms(paths.WORST, "p50_ms"), paths.direct_over_one("p50_ms"),
               paths.cancels_two_over_one, paths.failover_first_stop_s]  # fmt: skip
    assert [read({}) for read in readers] == [None] * 4
    no_stop = {"replicas": {**ROUND["replicas"]}}
    no_stop["replicas"]["two"] = {**ROUND["replicas"]["two"], "failover": _failover(None)}
    assert paths.failover_first_stop_s(no_stop) is None


def test_the_worst_path_is_judged_over_the_unary_floor_and_the_rest_as_ratios() -> None:
    floor_used = {"unary_rtt_p50_ms": 1.0, "unary_rtt_p99_ms": 2.0}

    found = ratios.evaluate_all(replicas.TARGETS, [ROUND], floor_used)

    assert found["replicas_worst_p50"]["ratio"] == 20.0
    assert found["replicas_worst_p50"]["met"] is False  # limit 14x
    assert found["replicas_worst_p99"]["ratio"] == 30.0
    assert found["replicas_worst_p99"]["met"] is True  # limit 30x
    assert found["replicas_direct_p50"]["met"] is True  # 1.25 ≤ 1.25
    assert found["replicas_cancels_ratio"]["met"] is False  # 0.75 < 1
    assert found["replicas_failover_first_stop"]["met"] is None  # shown, not judged
    for target in replicas.TARGETS:
        assert set(target.floor) <= set(floor.BASE_MEASURES), target.key


def test_the_scenario_is_registered_with_its_targets_and_details() -> None:
    [chosen] = scenarios.selected(["replicas"])

    assert chosen.targets == replicas.TARGETS
    assert chosen.details is not None
    text = "\n".join(chosen.details(ROUND))
    assert f"a = {A}, b = {B}" in text
    one = next(line for line in text.splitlines() if line.strip().startswith("one server"))
    assert one.split()[2:4] == ["10", "4.00"]  # n, p50 of Cancel → StopJob
    assert "two: worst (receiver = holder ≠ owner)" in text
    assert "first StopJob for one of its 20 builds 4.25 s" in text
    assert "agent reconnected: -" in text
    assert chosen.details({}) == []
