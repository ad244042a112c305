"""The results table: the floor, every target as a ratio to it (median of the rounds,
their spread, met or MISSED), then the details of the last round."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import machine_load
import ratios
from scenarios import Round, Scenario

KIB = 1024
FLOOR_ROWS = (
    ("unary_rtt", "bare grpc.aio unary RTT (health Check)"),
    ("push", "bare push: StopJob on 1 of {streams} streams → agent"),
    ("sqlite_commit", "bare SQLite commit (WAL, NORMAL)"),
)


def table(outcome: dict[str, Any], chosen: Sequence[Scenario]) -> str:
    lines = _header(outcome) + _floor_lines(outcome["floor"]) + _target_lines(outcome)
    last = outcome["rounds"][-1]
    lines += ["", f"details of round {len(outcome['rounds'])} (absolute; read the ratios above)"]
    lines += _latency_lines(last, outcome) + _throughput_lines(last) + _burst_lines(last)
    lines += _memory_lines(last) + _loop_lines(last)
    for scenario in chosen:
        if scenario.details is not None:
            lines += scenario.details(last)
    seconds = ", ".join(f"{name} {value:.0f}" for name, value in last["seconds"].items())
    lines.append(f"\nwall time of the whole run: {outcome['wall_seconds']:.0f} s")
    lines.append(f"seconds per scenario (round {len(outcome['rounds'])}): {seconds}")
    return "\n".join(lines)


def _header(outcome: dict[str, Any]) -> list[str]:
    machine = outcome["machine"]
    return [
        f"buildcontrol {outcome['version']} benchmarks on 127.0.0.1 — machine:"
        f" {machine['cores']} cores, Python {machine['python']}, {machine['platform']}",
        f"server loop: {outcome['server_loop']}; load generators' loop: "
        f"{outcome['load_loop']}; agents in their own process;"
        f" {len(outcome['rounds'])} round(s) of each scenario, interleaved",
        machine_load.describe(outcome["load"]),
    ]


def _floor_lines(floor: dict[str, Any]) -> list[str]:
    before, after = floor["before"]["measures"], floor["after"]["measures"]
    sizes = floor["before"].get("sizes", {"streams": "N", "unary_concurrency": "N"})
    lines = [
        "",
        f"  {'floor, measured before and after':<50}{'before':>16}{'after':>16}",
        f"  {'':<50}{'p50 / p99 ms':>16}{'p50 / p99 ms':>16}",
    ]
    names = list(FLOOR_ROWS)
    # PostgreSQL's floors, named after their backend: NAME_commit, NAME_notify.
    postgres = [
        key.removesuffix("_p50_ms")
        for key in before
        if key.startswith("postgresql") and key.endswith("_p50_ms")
    ]
    names += [(key, f"bare {key.replace('_', ' ')}") for key in postgres]
    for key, label in names:
        if f"{key}_p50_ms" in before:
            label = label.format(**sizes)
            lines.append(f"  {label:<50}{_pair(before, key):>16}{_pair(after, key):>16}")
    for key, label in (
        ("unary_calls_per_s", "bare unary calls/s ({unary_concurrency} at once)"),
        ("unary_calls_per_server_cpu_s", "bare unary calls per server CPU-s"),
    ):
        label = label.format(**sizes)
        lines.append(f"  {label:<50}{before[key]:>16.0f}{after[key]:>16.0f}")
    return lines


def _pair(measures: dict[str, float], key: str) -> str:
    return f"{measures[f'{key}_p50_ms']:.2f} / {measures[f'{key}_p99_ms']:.2f}"


def _target_lines(outcome: dict[str, Any]) -> list[str]:
    judged = outcome["judged"]
    lines = [
        "",
        f"  {'target':<46}{'median':>9}{'spread':>8}  {'÷ floor':<28}{'ratio':>8}"
        f"  {'limit':<7}{'' if judged else '(quick run: not judged)'}",
    ]
    for outcome_of in outcome["targets"].values():
        floor = outcome_of["floor"]
        floor_text = (
            "" if floor is None else f"{floor_name(outcome_of['floor_of'])} {_number(floor)}"
        )
        ratio = outcome_of["ratio"] if floor is not None else None
        verdict = {True: "met", False: "MISSED", None: ""}[outcome_of["met"]] if judged else ""
        lines.append(
            f"  {outcome_of['label']:<46}{_number(outcome_of['median']):>9}"
            f"{outcome_of['spread']:>8.0%}  {floor_text:<28}"
            f"{'' if ratio is None else f'{ratio:.2f}x':>8}"
            f"  {ratios.limit_text(outcome_of):<7}{verdict}"
        )
    lines.append("  (spread: (max - min) / median of the rounds; every round is in the JSON)")
    return lines


def floor_name(keys: str) -> str:
    """'unary_rtt_p50_ms' → 'unary RTT p50'; sums keep their ' + '."""
    for long, short in (
        ("_per_server_cpu_s", "/CPU-s"), ("_per_s", "/s"), ("_p50_ms", " p50"),
        ("_p99_ms", " p99"), ("unary_rtt", "unary RTT"), ("_", " "),
    ):  # fmt: skip
        keys = keys.replace(long, short)
    return keys


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"


def _row(label: str, summary: dict[str, float]) -> str:
    return (
        f"  {label:<44}{summary['p50_ms']:>10.2f}{summary['p99_ms']:>10.2f}"
        f"{summary['max_ms']:>10.2f}"
    )


def _latency_lines(results: Round, outcome: dict[str, Any]) -> list[str]:
    lines = [f"  {'latency (ms)':<44}{'p50':>10}{'p99':>10}{'max':>10}"]
    push = results.get("latency_push")
    if push:
        lines += [
            f"1 push: {push['builds']} running builds on {outcome['agents']} agents, "
            f"{push['cancels']} cancels one after another",
            _row("Cancel sent → StopJob received", push["cancel_to_stop"]),
            _row("Cancel sent → ACCEPTED", push["cancel_to_accepted"]),
            _row("Cancel sent → terminal (CANCELED)", push["cancel_to_terminal"]),
        ]
    poll = results.get("latency_poll")
    if poll:
        lines += [
            f"4 poll: same, agents poll GetBuild every {outcome['poll_interval']:g} s and"
            f" ignore pushed stops; a cancel every {poll['pace_ms']:g} ms",
            _row("Cancel sent → poll answer says stop", poll["cancel_to_stop"]),
            _row("Cancel sent → terminal (CANCELED)", poll["cancel_to_terminal"]),
        ]
    return lines if len(lines) > 1 else []


def _throughput_lines(results: Round) -> list[str]:
    throughput = results.get("throughput")
    if not throughput:
        return []
    lines = [
        "",
        "2 throughput: workers each cancel running builds one after another (to terminal)",
        f"  {'concurrency':>11}{'cancels':>9}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'per commit':>12}   CPU cores used: server / agents / client",
    ]
    for row in throughput["levels"]:
        cpu, per_commit = row["cpu_share"], row["cancels_per_commit"]
        lines.append(
            f"  {row['concurrency']:>11}{row['cancels']:>9}{row['cancels_per_s']:>9.0f}"
            f"{row['cancel_to_terminal']['p50_ms']:>9.1f}"
            f"{row['cancel_to_terminal']['p99_ms']:>9.1f}"
            f"{per_commit if per_commit is None else f'{per_commit:.1f}':>12}"
            f"   {cpu['server']:.2f} / {cpu['agents']:.2f} / {cpu['client']:.2f}"
        )
    return lines


def _burst_lines(results: Round) -> list[str]:
    burst = results.get("burst")
    if not burst:
        return []
    return [
        "",
        f"3 burst: {burst['builds']} running builds x {burst['jobs'] // burst['builds']} jobs, "
        "one CancelBuilds (by pipeline)",
        f"  all {burst['jobs']} jobs CANCELED in {burst['seconds_to_all_canceled']:.2f} s "
        f"(first build after {burst['seconds_to_first_canceled'] * 1000:.0f} ms); "
        f"{burst['commits']:.0f} commits = {burst['builds_per_commit']:.0f} builds per commit",
    ]


def _memory_lines(results: Round) -> list[str]:
    memory = results.get("memory", {})
    if not memory:
        return []
    lines = ["", "5 memory: server RSS (VmRSS), fresh server each, after a warm-up"]
    agents, bare, builds = memory["agents"], memory["bare_agents"], memory["builds"]
    lines += [
        f"  {agents['agents']} idle agent streams: {agents['rss_before_bytes'] / KIB / KIB:.1f}"
        f" → {agents['rss_after_bytes'] / KIB / KIB:.1f} MiB ="
        f" {agents['bytes_per_agent_stream'] / KIB:.1f} KiB per stream",
        "    of which grpc.aio's own (a bare Connect servicer, bare_agent_server.py): "
        f"{bare['bytes_per_agent_stream'] / KIB:.1f} KiB per stream",
        f"  {builds['builds']} live builds: {builds['rss_before_bytes'] / KIB / KIB:.1f}"
        f" → {builds['rss_after_bytes'] / KIB / KIB:.1f} MiB ="
        f" {builds['bytes_per_live_build'] / KIB:.1f} KiB per build",
    ]
    return lines


def _loop_lines(results: Round) -> list[str]:
    loops = results.get("loops")
    if not loops:
        return []
    lines = [
        "",
        "event loop of the server: scenario 1, then 2 at the loop levels (its best)",
        f"  {'loop':<10}{'stop p50':>10}{'stop p99':>10}{'term. p50':>11}"
        f"{'cancels/s':>11}{'per server CPU-s':>18}",
    ]
    for loop, rows in loops.items():
        for row in rows:
            lines.append(
                f"  {loop:<10}{row['stop_p50_ms']:>10.2f}{row['stop_p99_ms']:>10.2f}"
                f"{row['terminal_p50_ms']:>11.2f}{row['best_cancels_per_s']:>11.0f}"
                f"{row['cancels_per_server_cpu_s']:>18.0f}"
            )
    return lines
