"""The targets of the built-in scenarios, each a multiple of a floor measure
(floor.py) read from one round's results. Limits were converted from the absolute
targets measured on a quiet run of this 2-core machine (unary RTT p50 ~0.71 ms, a bare
push ~0.3 ms): e.g. Cancel → StopJob p50 ≤ 2 ms became ≤ 2.5x the unary RTT p50.

p50s are compared with the floor's p50, p99s with its p99: a loaded machine moves the
tail of everything, the floor's included."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from ratios import Results, Target

RTT50, RTT99 = ("unary_rtt_p50_ms",), ("unary_rtt_p99_ms",)


def _at(results: Results, *path: str) -> Any:
    """results[path[0]][path[1]]...; None when a step is missing (scenario not run)."""
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def best_cancels_per_server_cpu_s(results: Results) -> float | None:
    best = _at(results, "throughput", "best_level")
    return None if best is None else best["cancels_per_s"] / best["cpu_share"]["server"]


def burst_ms_per_job(results: Results) -> float | None:
    burst = results.get("burst")
    return None if burst is None else burst["seconds_to_all_canceled"] * 1000 / burst["jobs"]


def poll_ratio(results: Results) -> float | None:
    poll = _at(results, "latency_poll", "cancel_to_stop", "p50_ms")
    push = _at(results, "latency_push", "cancel_to_stop", "p50_ms")
    return None if poll is None or push is None else float(poll / push)


def stream_over_bare(results: Results) -> float | None:
    ours = _at(results, "memory", "agents", "bytes_per_agent_stream")
    bare = _at(results, "memory", "bare_agents", "bytes_per_agent_stream")
    return None if ours is None or bare is None else float(ours / bare)


def live_build_kib(results: Results) -> float | None:
    value = _at(results, "memory", "builds", "bytes_per_live_build")
    return None if value is None else float(value / 1024)


Reader = Callable[[Results], float | None]


def agent_burst_ms_per_build(measure: str) -> Reader:
    """Median over the round's bursts of `measure` (ms) divided by the builds."""

    def read(results: Results) -> float | None:
        bursts = _at(results, "agent_stop", "bursts")
        if not bursts:
            return None
        return float(statistics.median(b[measure] / b["builds"] for b in bursts))

    return read


def uvloop_over_asyncio(results: Results) -> float | None:
    loops = results.get("loops")
    if not loops:
        return None
    per_cpu = {
        loop: statistics.median(row["cancels_per_server_cpu_s"] for row in rows)
        for loop, rows in loops.items()
    }
    return float(per_cpu["uvloop"] / per_cpu["asyncio"])


def _path(*path: str) -> Reader:
    return lambda results: _at(results, *path)


LATENCY = (
    Target(
        "stop_p50",
        "1 Cancel → StopJob received p50",
        _path("latency_push", "cancel_to_stop", "p50_ms"),
        RTT50,
        2.5,
    ),
    Target(
        "stop_p99",
        "1 Cancel → StopJob received p99",
        _path("latency_push", "cancel_to_stop", "p99_ms"),
        RTT99,
        6.0,
    ),
    Target(
        "terminal_p50",
        "1 Cancel → terminal (CANCELED) p50",
        _path("latency_push", "cancel_to_terminal", "p50_ms"),
        RTT50,
        4.0,
    ),
)
THROUGHPUT = (
    Target(
        "cancels_per_server_cpu_s",
        "2 cancels per server CPU-s (best level)",
        best_cancels_per_server_cpu_s,
        ("unary_calls_per_server_cpu_s",),
        0.4,
        at_most=False,
        unit="/CPU-s",
    ),
    Target(
        "cancels_per_s",
        "2 cancels/s, raw (best level)",
        _path("throughput", "best_cancels_per_s"),
        ("unary_calls_per_s",),
        None,
        at_most=False,
        unit="/s",
    ),
)
BURST = (
    Target(
        "burst_ms_per_job",
        "3 burst: all CANCELED, per job",
        burst_ms_per_job,
        ("push_p50_ms",),
        1.6,
    ),
    Target(
        "builds_per_commit",
        "3 burst: builds per commit",
        _path("burst", "builds_per_commit"),
        (),
        50.0,
        at_most=False,
        unit="",
    ),
)
POLL = (
    Target(
        "poll_ratio",
        "4 poll ÷ push, Cancel → stop p50",
        poll_ratio,
        (),
        300.0,
        at_most=False,
        unit="x",
    ),
)
MEMORY = (
    Target(
        "agent_stream_over_bare",
        "5 RSS per idle agent stream ÷ bare grpc.aio's",
        stream_over_bare,
        (),
        1.3,
        unit="x",
    ),
    Target(
        "live_build_kib",
        "5 RSS per live build (KiB, not a time)",
        live_build_kib,
        (),
        20.0,
        unit="KiB",
    ),
)
AGENT_STOP = (
    Target(
        "agent_dead_p50",
        "6 Cancel → step process dead p50",
        _path("agent_stop", "single", "sent_to_dead", "p50_ms"),
        RTT50,
        4.0,
    ),
    Target(
        "agent_dead_p99",
        "6 Cancel → step process dead p99",
        _path("agent_stop", "single", "sent_to_dead", "p99_ms"),
        RTT99,
        6.0,
    ),
    Target(
        "agent_canceled_p50",
        "6 Cancel → CANCELED reported p50",
        _path("agent_stop", "single", "sent_to_canceled", "p50_ms"),
        RTT50,
        7.0,
    ),
    Target(
        "agent_burst_dead_per_build",
        "6 builds at once: all dead, per build",
        agent_burst_ms_per_build("all_dead_ms"),
        RTT50,
        0.85,
    ),
    Target(
        "agent_burst_canceled_per_build",
        "6 builds at once: all CANCELED, per build",
        agent_burst_ms_per_build("all_canceled_ms"),
        RTT50,
        1.4,
    ),
)


def bulk_all_canceled_ms_per_job(results: Results) -> float | None:
    bulk = _at(results, "agent_stop", "bulk")
    return None if not bulk else float(bulk["all_canceled_ms"] / bulk["jobs"])


# One CancelBuilds over 5,000 builds x 2 jobs on load agents. The absolute targets
# (first StopJob <= 20 ms, all 10,000 CANCELED <= 2 s) over a quiet run's floor.
CANCEL_BUILDS = (
    Target(
        "bulk_first_stop",
        "6 CancelBuilds 5,000 x 2: first StopJob at an agent",
        _path("agent_stop", "bulk", "first_stop_ms"),
        RTT50,
        28.0,
    ),
    Target(
        "bulk_all_canceled_per_job",
        "6 CancelBuilds 5,000 x 2: all CANCELED, per job",
        bulk_all_canceled_ms_per_job,
        ("push_p50_ms",),
        0.67,
    ),
)


def _rss_change(who: str, way: str) -> Reader:
    return _path("logflood", "flood_window", who, f"max_{way}_after_warmup_pct")


# 50 steps flooding output beside cancels of idle jobs: the flood must not be in the
# way of a stop (its own quiet run in the same round is the floor), memory stays flat,
# and a printed line reaches a follower within 50 ms on a quiet run (~70x the RTT).
LOG_FLOOD = (
    Target(
        "flood_stop_p50", "logs: Cancel → StopJob p50, flood ÷ quiet",
        _path("logflood", "stop_ratio_p50"), (), 1.5, unit="x",
    ),
    Target(
        "flood_stop_p99", "logs: Cancel → StopJob p99, flood ÷ quiet",
        _path("logflood", "stop_ratio_p99"), (), 1.5, unit="x",
    ),
    # Memory: its growth over the warm-up sample is judged; a drop is shown (the jobs
    # cancelled in the window give memory back: bench/README.md, "Logs beside stops").
    Target(
        "flood_server_rss", "logs: server RSS growth over the flood (%)",
        _rss_change("server_rss", "rise"), (), 10.0, unit="%",
    ),
    Target(
        "flood_agent_rss", "logs: agent RSS growth over the flood (%)",
        _rss_change("agent_rss", "rise"), (), 10.0, unit="%",
    ),
    Target(
        "flood_server_rss_drop", "logs: server RSS drop over the flood (%)",
        _rss_change("server_rss", "drop"), unit="%",
    ),
    Target(
        "flood_agent_rss_drop", "logs: agent RSS drop over the flood (%)",
        _rss_change("agent_rss", "drop"), unit="%",
    ),
    Target(
        "follow_line_p50", "logs: printed line → follower p50, under the flood",
        _path("logflood", "follow_line_flood", "p50_ms"), RTT50, 70.0,
    ),
    # Shown, not judged: what the flood costs, so that a stop target met by ingesting
    # less, or by spending more CPU, shows in the same table.
    Target(
        "flood_ingest_mb_per_s", "logs: ingested under the flood (MB/s)",
        _path("logflood", "flood_window", "ingested_mb_per_s"), unit="MB/s",
    ),
    Target(
        "flood_upload_streams_per_s", "logs: UploadLogs streams per second",
        _path("logflood", "flood_window", "upload_streams_per_s"), unit="/s",
    ),
    Target(
        "flood_server_cores", "logs: server CPU cores over the flood",
        _path("logflood", "flood_window", "server_cores"), unit="cores",
    ),
    Target(
        "flood_agent_cores", "logs: agent CPU cores over the flood",
        _path("logflood", "flood_window", "agent_cores"), unit="cores",
    ),
)  # fmt: skip

LOOPS = (
    Target(
        "uvloop_over_asyncio",
        "loops: uvloop ÷ asyncio, cancels per CPU-s",
        uvloop_over_asyncio,
        (),
        None,
        at_most=False,
        unit="x",
    ),
)

ALL = LATENCY + THROUGHPUT + BURST + POLL + MEMORY + AGENT_STOP + CANCEL_BUILDS + LOOPS + LOG_FLOOD
