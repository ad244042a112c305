"""The replicas scenario's lines of the detail table (one round, absolute times):
the one server beside the two replicas' paths, the throughput levels, the failover."""

from __future__ import annotations

from typing import Any

import replicas_paths as paths


def details(results: dict[str, Any]) -> list[str]:
    found = results.get("replicas")
    return [] if found is None else replicas_table(found)


def _stop_row(label: str, found: dict[str, Any]) -> str:
    stop = found["cancel_to_stop"]
    accepted, terminal = found["cancel_to_accepted"], found["cancel_to_terminal"]
    return (
        f"  {label:<40}{stop['n']:>5}{stop['p50_ms']:>9.2f}{stop['p99_ms']:>9.2f}"
        f"{stop['max_ms']:>9.2f}{accepted['p50_ms']:>10.2f}{terminal['p50_ms']:>10.2f}"
    )


def _rate_row(label: str, rate: dict[str, Any]) -> str:
    share = rate["cpu_share"]
    cores, database = share["server"], share["database"]
    # The benchmark's own agents and client share the machine's cores: with them the
    # row shows whether the level was bound by the CPU left, and what a cancel cost.
    load = share.get("agents", 0.0) + share.get("client", 0.0)
    per_cancel_ms = 1000 * (cores + database) / rate["cancels_per_s"]
    return (
        f"  {label:<40}{rate['cancels']:>5}{rate['cancels_per_s']:>9.0f}"
        f"{rate['cancel_to_terminal']['p50_ms']:>9.1f}{rate['cancel_to_terminal']['p99_ms']:>9.1f}"
        f"{cores:>8.2f}{rate['cancels_per_s'] / cores:>10.0f}{database:>9.2f}{load:>6.2f}"
        f"{per_cancel_ms:>10.2f}"
    )


def replicas_table(found: dict[str, Any]) -> list[str]:
    sizes, one, two = found["sizes"], found["one"], found["two"]
    a, b = two["replicas"]
    lines = [
        "",
        f"replicas: 2 replicas (--replicas on, lease {sizes['lease_s']:g} s) on one PostgreSQL"
        f" beside 1 server (--replicas off), same round; {sizes['agents']} load agents,"
        f" {sizes['builds']} running builds; a = {a}, b = {b}",
        f"  {'Cancel → StopJob (ms), one after another':<40}{'n':>5}{'p50':>9}{'p99':>9}"
        f"{'max':>9}{'acc. p50':>10}{'term. p50':>10}",
        _stop_row("one server", one),
    ]
    for path, shown in ((paths.DIRECT, "owner = receiver = holder"),
                        (paths.WORST, "receiver = holder ≠ owner")):  # fmt: skip
        if path in two["paths"]:
            lines.append(_stop_row(f"two: {path} ({shown})", two["paths"][path]))
    concurrency = sizes["throughput_concurrency"]
    lines += [
        f"  {f'throughput at {concurrency}, to terminal; cores':<40}{'n':>5}{'per s':>9}"
        f"{'p50':>9}{'p99':>9}{'server':>8}{'per CPU-s':>10}{'database':>9}{'load':>6}"
        f"{'CPU ms':>10}",
        _rate_row("one server", one["throughput"]),
        _rate_row("two replicas, a and b in turn", two["throughput"]),
        _paths_line(two["throughput"]),
        _rate_row("two replicas, each to its owner", two["throughput_to_owner"]),
        _paths_line(two["throughput_to_owner"]),
    ]
    return lines + _failover_lines(two["failover"])


def _paths_line(rate: dict[str, Any]) -> str:
    return "    their paths: " + ", ".join(f"{path} {n}" for path, n in rate["paths"].items())


def _failover_lines(failover: dict[str, Any]) -> list[str]:
    def seconds(key: str) -> str:
        value = failover[key]
        return "-" if value is None else f"{value:.2f} s"

    return [
        f"  failover: SIGKILL of a → first StopJob for one of its {failover['builds']} builds"
        f" {seconds('first_stop_s')} (agent held by b: {seconds('first_stop_agent_on_survivor_s')},"
        f" agent reconnected: {seconds('first_stop_agent_reconnected_s')}); last"
        f" {seconds('last_stop_s')}, all CANCELED {seconds('all_canceled_s')}",
        f"    {failover['agents_reconnected']} agents of a back on b after"
        f" {seconds('agents_reconnected_s')}; tries per cancel {failover['tries']};"
        f" stops never at the agent (FORCED): {failover['stops_missing']}",
    ]
