"""How busy the machine is: load average (/proc/loadavg) and CPU steal time
(/proc/stat), read before and after a run so that its numbers can be read against them.

Steal is the time a virtual CPU was ready to run but the hypervisor ran someone else:
on a shared VM it moves every timing of the run, and no process of ours can see it
otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Field order of the aggregate "cpu" line of /proc/stat (proc(5)), in USER_HZ ticks.
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def parse_cpu_line(text: str) -> dict[str, int]:
    """The aggregate `cpu` line of /proc/stat as {field: ticks} (guest time, counted
    inside user and nice already, is left out)."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [int(value) for value in parts[1 : 1 + len(CPU_FIELDS)]]
            values += [0] * (len(CPU_FIELDS) - len(values))  # old kernels: no steal
            return dict(zip(CPU_FIELDS, values, strict=True))
    raise ValueError("no aggregate cpu line in /proc/stat")


def steal_share(before: dict[str, int], after: dict[str, int]) -> float:
    """Stolen ticks over all ticks between two readings (0.0 when no tick passed)."""
    total = sum(after[name] - before[name] for name in CPU_FIELDS)
    return (after["steal"] - before["steal"]) / total if total > 0 else 0.0


def parse_loadavg(text: str) -> tuple[float, float, float]:
    one, five, fifteen = (float(value) for value in text.split()[:3])
    return one, five, fifteen


def snapshot() -> dict[str, Any]:
    """Load averages and the cpu ticks now."""
    return {
        "loadavg": parse_loadavg(Path("/proc/loadavg").read_text()),
        "cpu_ticks": parse_cpu_line(Path("/proc/stat").read_text()),
    }


def between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the report keeps: both load averages and the steal share in between."""
    return {
        "loadavg_before": list(before["loadavg"]),
        "loadavg_after": list(after["loadavg"]),
        "steal_share": steal_share(before["cpu_ticks"], after["cpu_ticks"]),
        "steal_ticks_before": before["cpu_ticks"]["steal"],
        "steal_ticks_after": after["cpu_ticks"]["steal"],
    }


def describe(load: dict[str, Any]) -> str:
    """One line for the table."""
    before, after = load["loadavg_before"], load["loadavg_after"]
    return (
        f"load average (1/5/15 min) before {before[0]:.2f} / {before[1]:.2f} / {before[2]:.2f},"
        f" after {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f};"
        f" CPU steal during the run {load['steal_share']:.1%}"
    )
