"""The results table, with each target of issue 8 checked: met or MISSED."""

from __future__ import annotations

import statistics
from typing import Any

KIB = 1024

# (name, limit) of each target; the checks below say how each is compared.
TARGETS = {
    "stop_p50_ms": 2.0,
    "stop_p99_ms": 10.0,
    "terminal_p50_ms": 5.0,
    "cancels_per_s": 1000.0,
    "burst_seconds": 5.0,
    "builds_per_commit": 50.0,
    "poll_ratio": 300.0,
    "agent_stream_kib": 50.0,
    "live_build_kib": 20.0,
}


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def checks(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: its value, its limit, met or not (only for scenarios that ran)."""
    found: dict[str, dict[str, Any]] = {}

    def check(name: str, value: float | None, ok: bool) -> None:
        found[name] = {"value": value, "target": TARGETS[name], "met": ok}

    push = results.get("latency_push")
    if push:
        stop, terminal = push["cancel_to_stop"], push["cancel_to_terminal"]
        check("stop_p50_ms", stop["p50_ms"], stop["p50_ms"] <= TARGETS["stop_p50_ms"])
        check("stop_p99_ms", stop["p99_ms"], stop["p99_ms"] <= TARGETS["stop_p99_ms"])
        check(
            "terminal_p50_ms",
            terminal["p50_ms"],
            terminal["p50_ms"] <= TARGETS["terminal_p50_ms"],
        )
    if results.get("throughput"):
        best = results["throughput"]["best_cancels_per_s"]
        check("cancels_per_s", best, best >= TARGETS["cancels_per_s"])
    burst = results.get("burst")
    if burst:
        seconds = burst["seconds_to_all_canceled"]
        check("burst_seconds", seconds, seconds <= TARGETS["burst_seconds"])
        per_commit = burst["builds_per_commit"] or float("inf")
        check("builds_per_commit", per_commit, per_commit >= TARGETS["builds_per_commit"])
    ratio = results.get("poll_ratio")
    if ratio:
        check("poll_ratio", ratio["stop"], ratio["stop"] >= TARGETS["poll_ratio"])
    memory = results.get("memory", {})
    if "agents" in memory:
        kib = memory["agents"]["bytes_per_agent_stream"] / KIB
        check("agent_stream_kib", kib, kib <= TARGETS["agent_stream_kib"])
    if "builds" in memory:
        kib = memory["builds"]["bytes_per_live_build"] / KIB
        check("live_build_kib", kib, kib <= TARGETS["live_build_kib"])
    return found


def loop_ratio(loops: dict[str, list[dict[str, float]]]) -> dict[str, float]:
    """uvloop's median over asyncio's, per measure of the loop comparison."""
    return {
        key: statistics.median(r[key] for r in loops["uvloop"])
        / statistics.median(r[key] for r in loops["asyncio"])
        for key in loops["asyncio"][0]
        if key != "best_concurrency"
    }


def _row(label: str, summary: dict[str, float], target: str, verdict: str) -> str:
    return (
        f"  {label:<44}{summary['p50_ms']:>10.2f}{summary['p99_ms']:>10.2f}"
        f"{summary['max_ms']:>10.2f}   {target:<22}{verdict}"
    )


def table(results: dict[str, Any]) -> str:
    found = checks(results)
    lines = _header(results)
    for section in (_latency, _throughput, _burst, _memory, _loops):
        lines += section(results, found)
    lines.append(f"\nwall time of the whole run: {results['wall_seconds']:.0f} s")
    return "\n".join(lines)


def _header(results: dict[str, Any]) -> list[str]:
    """The machine, the loops, and the latency columns."""
    machine = results["machine"]
    return [
        f"buildcontrol benchmarks on 127.0.0.1 — machine: {machine['cores']} cores, "
        f"Python {machine['python']}, {machine['platform']}",
        f"server loop: {results['server_loop']}; load generators' loop: "
        f"{results['load_loop']}; agents in their own process",
        "",
        f"  {'latency (ms)':<44}{'p50':>10}{'p99':>10}{'max':>10}   {'target':<22}",
    ]


def _latency(results: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Scenarios 1 (push) and 4 (poll), and their ratio."""
    lines: list[str] = []
    push = results.get("latency_push")
    if push:
        lines.append(
            f"1 push: {push['builds']} running builds on {results['agents']} agents, "
            f"{push['cancels']} cancels one after another"
        )
        ok = found["stop_p50_ms"]["met"] and found["stop_p99_ms"]["met"]
        lines.append(
            _row(
                "Cancel sent → StopJob received",
                push["cancel_to_stop"],
                "p50≤2 p99≤10",
                _verdict(ok),
            )
        )
        lines.append(_row("Cancel sent → ACCEPTED", push["cancel_to_accepted"], "", ""))
        lines.append(
            _row(
                "Cancel sent → terminal (CANCELED)",
                push["cancel_to_terminal"],
                "p50≤5",
                _verdict(found["terminal_p50_ms"]["met"]),
            )
        )
    poll = results.get("latency_poll")
    if poll:
        lines.append(
            f"4 poll: same, agents poll GetBuild every {results['poll_interval']:g} s and ignore "
            f"pushed stops; a cancel every {poll['pace_ms']:g} ms"
        )
        lines.append(_row("Cancel sent → poll answer says stop", poll["cancel_to_stop"], "", ""))
        lines.append(_row("Cancel sent → terminal (CANCELED)", poll["cancel_to_terminal"], "", ""))
    ratio = results.get("poll_ratio")
    if ratio:
        lines.append(
            f"  ratio of medians, poll ÷ push: stop {ratio['stop']:.0f}x, terminal "
            f"{ratio['terminal']:.0f}x{'':<11}≥300x (stop){'':<11}"
            f"{_verdict(found['poll_ratio']['met'])}"
        )
    return lines


def _throughput(results: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Scenario 2: cancels per second by concurrency."""
    lines: list[str] = []
    throughput = results.get("throughput")
    if throughput:
        lines += [
            "",
            "2 throughput: workers each cancel running builds one after another (to terminal)",
            f"  {'concurrency':>11}{'cancels':>9}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'per commit':>12}   CPU cores used: server / agents / client",
        ]
        for row in throughput["levels"]:
            cpu = row["cpu_share"]
            per_commit = row["cancels_per_commit"]
            lines.append(
                f"  {row['concurrency']:>11}{row['cancels']:>9}{row['cancels_per_s']:>9.0f}"
                f"{row['cancel_to_terminal']['p50_ms']:>9.1f}"
                f"{row['cancel_to_terminal']['p99_ms']:>9.1f}"
                f"{per_commit if per_commit is None else f'{per_commit:.1f}':>12}"
                f"   {cpu['server']:.2f} / {cpu['agents']:.2f} / {cpu['client']:.2f}"
            )
        lines.append(
            f"  best: {throughput['best_cancels_per_s']:.0f} cancels/s at concurrency "
            f"{throughput['best_level']['concurrency']}{'':<24}≥1000/s{'':<16}"
            f"{_verdict(found['cancels_per_s']['met'])}"
        )
    return lines


def _burst(results: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Scenario 3: one CancelBuilds over many running builds."""
    lines: list[str] = []
    burst = results.get("burst")
    if burst:
        ok = found["burst_seconds"]["met"] and found["builds_per_commit"]["met"]
        lines += [
            "",
            f"3 burst: {burst['builds']} running builds x {burst['jobs'] // burst['builds']} jobs, "
            "one CancelBuilds (by pipeline)",
            f"  all {burst['jobs']} jobs CANCELED in {burst['seconds_to_all_canceled']:.2f} s "
            f"(first build after {burst['seconds_to_first_canceled'] * 1000:.0f} ms); "
            f"{burst['commits']:.0f} commits = {burst['builds_per_commit']:.0f} builds per commit"
            f"   ≤5 s, ≥50 builds/commit   {_verdict(ok)}",
        ]
    return lines


def _memory(results: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Scenario 5: server memory per agent stream and per live build."""
    lines: list[str] = []
    memory = results.get("memory", {})
    if memory:
        lines += ["", "5 memory: server RSS (VmRSS), fresh server each, after a warm-up"]
    if "agents" in memory:
        agents = memory["agents"]
        lines.append(
            f"  {agents['agents']} idle agent streams: {agents['rss_before_bytes'] / KIB / KIB:.1f}"
            f" → {agents['rss_after_bytes'] / KIB / KIB:.1f} MiB = "
            f"{agents['bytes_per_agent_stream'] / KIB:.1f} KiB per stream"
            f"{'':<8}≤50 KiB{'':<8}{_verdict(found['agent_stream_kib']['met'])}"
        )
    if "bare_agents" in memory:
        bare = memory["bare_agents"]
        lines.append(
            f"    of which grpc.aio's own (a bare Connect servicer, bare_agent_server.py): "
            f"{bare['bytes_per_agent_stream'] / KIB:.1f} KiB per stream"
        )
    if "builds" in memory:
        builds = memory["builds"]
        lines.append(
            f"  {builds['builds']} live builds: {builds['rss_before_bytes'] / KIB / KIB:.1f}"
            f" → {builds['rss_after_bytes'] / KIB / KIB:.1f} MiB = "
            f"{builds['bytes_per_live_build'] / KIB:.1f} KiB per build"
            f"{'':<10}≤20 KiB{'':<8}{_verdict(found['live_build_kib']['met'])}"
        )
    return lines


def _loops(results: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """asyncio against uvloop, when both ran."""
    lines: list[str] = []
    loops = results.get("loops")
    if loops:
        levels = ", ".join(f"{c}" for c, _ in results["loop_levels"])
        lines += [
            "",
            f"event loop of the server: scenario 1, then 2 at concurrency {levels} (its best)",
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
        ratio = loop_ratio(loops)
        lines.append(
            f"  uvloop ÷ asyncio (medians): cancels/s x{ratio['best_cancels_per_s']:.2f}, per "
            f"server CPU-s x{ratio['cancels_per_server_cpu_s']:.2f}, stop p50 "
            f"x{ratio['stop_p50_ms']:.2f}, terminal p50 x{ratio['terminal_p50_ms']:.2f}"
        )
    return lines
