"""The pure parts of the benchmarks (bench/): targets as ratios to a floor measured in
the same run, the spread of rounds, and the machine's load from /proc. The benchmark
itself runs as `make bench-quick` (CI)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent.parent / "bench"))

import backends
import floor
import machine_load
import ratios
import targets
from ratios import Target


def stop_p50(results: ratios.Results) -> float | None:
    return results.get("stop")


STOP = Target("stop", "stop p50", stop_p50, ("unary_rtt_p50_ms",), 2.5)


def test_a_latency_target_is_the_median_of_the_rounds_over_the_floor() -> None:
    outcome = ratios.evaluate(STOP, [{"stop": 2.0}, {"stop": 1.0}, {"stop": 4.0}], {
        "unary_rtt_p50_ms": 0.8
    })  # fmt: skip

    assert outcome is not None
    assert outcome["rounds"] == [2.0, 1.0, 4.0]
    assert outcome["median"] == 2.0
    assert outcome["ratio"] == pytest.approx(2.5)
    assert outcome["met"] is True  # 2.5 ≤ 2.5
    assert outcome["spread"] == pytest.approx(1.5)  # (4 - 1) / 2


def test_a_latency_target_above_its_multiple_of_the_floor_is_missed() -> None:
    outcome = ratios.evaluate(STOP, [{"stop": 2.1}], {"unary_rtt_p50_ms": 0.8})

    assert outcome is not None and outcome["met"] is False


def test_the_same_latency_meets_its_target_on_a_slower_machine() -> None:
    rounds = [{"stop": 2.4}]

    quiet = ratios.evaluate(STOP, rounds, {"unary_rtt_p50_ms": 0.7})
    loaded = ratios.evaluate(STOP, rounds, {"unary_rtt_p50_ms": 1.1})

    assert quiet is not None and quiet["met"] is False  # 3.4x
    assert loaded is not None and loaded["met"] is True  # 2.2x


def test_a_floor_of_several_measures_is_their_sum() -> None:
    target = Target("pg", "pg", stop_p50, ("unary_rtt_p50_ms", "postgresql_commit_p50_ms"), 2.5)

    outcome = ratios.evaluate(
        target, [{"stop": 6.0}], {"unary_rtt_p50_ms": 1.0, "postgresql_commit_p50_ms": 2.0}
    )

    assert outcome is not None
    assert outcome["floor"] == 3.0 and outcome["ratio"] == 2.0
    assert outcome["floor_of"] == "unary_rtt_p50_ms + postgresql_commit_p50_ms"


def test_a_throughput_target_must_reach_its_share_of_the_floor() -> None:
    target = Target(
        "rate", "rate", lambda r: r.get("rate"), ("unary_calls_per_server_cpu_s",), 0.4,
        at_most=False, unit="/CPU-s",
    )  # fmt: skip

    low = ratios.evaluate(target, [{"rate": 700.0}], {"unary_calls_per_server_cpu_s": 2000.0})
    high = ratios.evaluate(target, [{"rate": 900.0}], {"unary_calls_per_server_cpu_s": 2000.0})

    assert low is not None and low["met"] is False
    assert high is not None and high["met"] is True
    assert ratios.limit_text(high) == "≥0.4x"


def test_a_target_without_a_limit_is_shown_not_judged() -> None:
    target = Target("raw", "raw", lambda r: r.get("rate"), ("unary_calls_per_s",), None)

    outcome = ratios.evaluate(target, [{"rate": 500.0}], {"unary_calls_per_s": 1000.0})

    assert outcome is not None
    assert outcome["ratio"] == 0.5 and outcome["met"] is None
    assert ratios.limit_text(outcome) == ""


def test_a_plain_number_target_is_compared_as_it_is() -> None:
    target = Target(
        "per_commit", "per commit", lambda r: r.get("n"), (), 50.0, at_most=False, unit=""
    )

    outcome = ratios.evaluate(target, [{"n": 60.0}], {})

    assert outcome is not None
    assert outcome["floor"] is None and outcome["ratio"] == 60.0 and outcome["met"] is True
    assert ratios.limit_text(outcome) == "≥50"


def test_a_target_whose_floor_was_not_measured_has_no_ratio() -> None:
    outcome = ratios.evaluate(STOP, [{"stop": 1.0}], {})

    assert outcome is not None and outcome["ratio"] is None and outcome["met"] is None


def test_a_scenario_that_did_not_run_has_no_outcome() -> None:
    assert ratios.evaluate(STOP, [{}, {}], {"unary_rtt_p50_ms": 1.0}) is None
    assert ratios.evaluate_all([STOP], [{}], {"unary_rtt_p50_ms": 1.0}) == {}


def test_spread_of_one_round_or_a_zero_median_is_zero() -> None:
    assert ratios.spread([3.0]) == 0.0
    assert ratios.spread([0.0, 0.0, 1.0]) == 0.0
    assert ratios.spread([9.0, 10.0, 11.0]) == pytest.approx(0.2)


def test_the_floor_used_is_the_mean_of_before_and_after() -> None:
    before = {"unary_rtt_p50_ms": 0.7, "only_before": 1.0}
    after = {"unary_rtt_p50_ms": 1.1, "only_after": 2.0}

    assert ratios.combine_floors(before, after) == pytest.approx(
        {"unary_rtt_p50_ms": 0.9, "only_before": 1.0, "only_after": 2.0}
    )
    assert ratios.drift(before, after) == pytest.approx({"unary_rtt_p50_ms": 1.1 / 0.7})


def test_every_built_in_target_names_a_floor_every_run_measures() -> None:
    for target in targets.ALL:
        assert set(target.floor) <= set(floor.BASE_MEASURES), target.key


PROC_STAT = """cpu  1073479 40099 198470 914806 7917 0 10825 15354 0 0
cpu0 536739 20049 99235 457403 3958 0 5412 7677 0 0
intr 12345
"""


def test_the_aggregate_cpu_line_of_proc_stat_is_read_by_field() -> None:
    ticks = machine_load.parse_cpu_line(PROC_STAT)

    assert ticks["user"] == 1073479 and ticks["idle"] == 914806 and ticks["steal"] == 15354


def test_a_kernel_without_steal_time_reads_as_zero_steal() -> None:
    assert machine_load.parse_cpu_line("cpu  10 0 5 100 0 0 0\n")["steal"] == 0


def test_proc_stat_without_a_cpu_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="no aggregate cpu line"):
        machine_load.parse_cpu_line("cpu0 1 2 3 4\n")


def test_steal_share_is_stolen_ticks_over_all_ticks_between_readings() -> None:
    before = machine_load.parse_cpu_line("cpu  100 0 0 100 0 0 0 0\n")
    after = machine_load.parse_cpu_line("cpu  160 0 10 120 0 0 0 10\n")

    assert machine_load.steal_share(before, after) == pytest.approx(10 / 100)
    assert machine_load.steal_share(before, before) == 0.0


def test_load_average_and_steal_are_described_in_one_line() -> None:
    before = {"loadavg": machine_load.parse_loadavg("1.50 2.00 3.25 2/100 123\n"),
              "cpu_ticks": machine_load.parse_cpu_line("cpu  100 0 0 100 0 0 0 0\n")}  # fmt: skip
    after = {"loadavg": (4.0, 3.0, 2.0),
             "cpu_ticks": machine_load.parse_cpu_line("cpu  150 0 0 140 0 0 0 10\n")}  # fmt: skip

    load = machine_load.between(before, after)

    assert load["loadavg_before"] == [1.5, 2.0, 3.25]
    assert machine_load.describe(load) == (
        "load average (1/5/15 min) before 1.50 / 2.00 / 3.25, after 4.00 / 3.00 / 2.00;"
        " CPU steal during the run 10.0%"
    )


def test_built_in_targets_read_their_scenario_results() -> None:
    results = {
        "latency_push": {"cancel_to_stop": {"p50_ms": 2.0}},
        "latency_poll": {"cancel_to_stop": {"p50_ms": 1000.0}},
        "throughput": {"best_level": {"cancels_per_s": 1000.0, "cpu_share": {"server": 0.8}}},
        "burst": {"seconds_to_all_canceled": 3.0, "jobs": 10_000},
        "agent_stop": {"bursts": [{"builds": 50, "all_dead_ms": 100.0},
                                  {"builds": 50, "all_dead_ms": 50.0}]},
    }  # fmt: skip

    assert targets.poll_ratio(results) == 500.0
    assert targets.best_cancels_per_server_cpu_s(results) == 1250.0
    assert targets.burst_ms_per_job(results) == pytest.approx(0.3)
    assert targets.agent_burst_ms_per_build("all_dead_ms")(results) == pytest.approx(1.5)
    assert targets.poll_ratio({"latency_push": results["latency_push"]}) is None
    assert targets.burst_ms_per_job({}) is None


def test_the_table_shows_floor_ratio_and_verdict_of_each_target() -> None:
    import report
    import scenarios

    measures = {key: 1.0 for key in floor.BASE_MEASURES}
    summary = {"n": 3, "p50_ms": 2.0, "p99_ms": 7.0, "max_ms": 9.0}
    latency = {"builds": 10, "cancels": 3, "cancel_to_stop": summary,
               "cancel_to_accepted": summary, "cancel_to_terminal": summary}  # fmt: skip
    rounds = [{"latency_push": latency, "seconds": {"latency": 1.0}}] * 3
    load = {"loadavg_before": [1.0, 1.0, 1.0], "loadavg_after": [2.0, 2.0, 2.0],
            "steal_share": 0.0}  # fmt: skip
    outcome = {
        "version": "0.1.0", "machine": {"cores": 2, "python": "3.11", "platform": "Linux"},
        "server_loop": "asyncio", "load_loop": "asyncio", "agents": 2, "poll_interval": 2.0,
        "judged": True, "load": load, "rounds": rounds, "wall_seconds": 1.0,
        "floor": {"before": {"measures": measures}, "after": {"measures": measures}},
        "targets": ratios.evaluate_all(targets.LATENCY, rounds, measures),
    }  # fmt: skip

    text = report.table(outcome, scenarios.selected(["latency"]))

    assert "3 round(s) of each scenario" in text
    assert "load average (1/5/15 min) before 1.00 / 1.00 / 1.00" in text
    stop = next(line for line in text.splitlines() if "StopJob received p50" in line)
    assert "unary RTT p50 1.00" in stop and "2.00x" in stop and stop.endswith("met")
    p99 = next(line for line in text.splitlines() if "StopJob received p99" in line)
    assert "7.00x" in p99 and p99.endswith("MISSED")  # limit 6x


def test_a_history_row_lists_each_ratio_with_its_spread() -> None:
    import history

    stop = ratios.evaluate(STOP, [{"stop": 1.8}, {"stop": 2.0}, {"stop": 2.2}], {
        "unary_rtt_p50_ms": 1.0
    })  # fmt: skip
    outcome = {
        "version": "0.2.0", "at": "2026-12-01T22:00:00Z",
        "load": {"loadavg_before": [3.0, 0, 0], "loadavg_after": [5.25, 0, 0]},
        "floor": {"used": {"unary_rtt_p50_ms": 0.8}}, "targets": {"stop_p50": stop},
    }  # fmt: skip

    assert history.row(outcome) == (
        "| 0.2.0 | 2026-12-01 | 3.0 → 5.2 | 0.80 | 2.00 (±20%) | - | - | - | - | - | - |"
    )
    for line in history.header().splitlines():  # the title and the --- line
        assert line.count("|") == history.row(outcome).count("|")


def test_the_bare_postgresql_commit_splits_into_its_fsync_and_the_rest() -> None:
    parts = backends.postgres_floor_parts(
        {
            "postgresql_commit_p50_ms": 0.5,
            "postgresql-async-commit_commit_p50_ms": 0.2,
            "sqlite_commit_p50_ms": 0.25,
        }
    )

    assert parts == {
        "commit_p50_ms": 0.5,
        "fsync_p50_ms": pytest.approx(0.3),
        "round_trip_and_update_p50_ms": 0.2,
        "sqlite_commit_p50_ms": 0.25,
    }
    assert backends.postgres_floor_parts({"postgresql_commit_p50_ms": 0.5}) is None


def test_the_backends_latency_rows_are_percentiles_of_every_rounds_cancels_together() -> None:
    def result(samples: list[float]) -> dict[str, object]:
        p99 = sorted(samples)[-1]
        return {"latency_push": {"cancel_to_stop": {"p50_ms": 1.0, "p99_ms": p99},
                                 "samples_ms": {"cancel_to_stop": samples}}}  # fmt: skip

    # One round with a tail: the median of the rounds' p99s hides it or shows it by
    # chance; pooled, it weighs as many cancels as it has.
    rounds = [result([1.0] * 99 + [9.0]), result([1.0] * 100), result([1.0] * 100)]
    assert backends.pooled_stop(rounds, 99.0) == 1.0
    assert backends.pooled_stop(rounds, 100.0) == 9.0
    # A result from before the samples were kept: the caller uses the rounds' median.
    assert backends.pooled_stop([{"latency_push": {"cancel_to_stop": {}}}], 99.0) is None
