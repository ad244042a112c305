"""One row of bench/README.md's history table from a `make bench` JSON file:
`.venv/bin/python bench/history.py bench/results/cancel_bench.json` prints it (add it
to the table for each released version)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# (target key, column title) of the history table, in order.
COLUMNS = (
    ("stop_p50", "stop p50 ÷ RTT"),
    ("stop_p99", "stop p99 ÷ RTT p99"),
    ("terminal_p50", "terminal p50 ÷ RTT"),
    ("cancels_per_server_cpu_s", "cancels/CPU-s ÷ bare"),
    ("burst_ms_per_job", "burst per job ÷ push"),
    ("poll_ratio", "poll ÷ push"),
    ("agent_dead_p50", "process dead p50 ÷ RTT"),
)


def header() -> str:
    titles = ["version", "date", "load avg (before → after)", "unary RTT p50 ms"]
    titles += [title for _, title in COLUMNS]
    return "| " + " | ".join(titles) + " |\n|" + " --- |" * len(titles)


def row(outcome: Mapping[str, Any]) -> str:
    """Each column's ratio (median of the rounds; its spread in brackets), '-' for a
    target the run did not measure."""
    load = outcome["load"]
    cells = [
        outcome["version"],
        outcome["at"][:10],
        f"{load['loadavg_before'][0]:.1f} → {load['loadavg_after'][0]:.1f}",
        f"{outcome['floor']['used']['unary_rtt_p50_ms']:.2f}",
    ]
    for key, _ in COLUMNS:
        found = outcome["targets"].get(key)
        cells.append("-" if found is None else f"{found['ratio']:.2f} (±{found['spread']:.0%})")
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    print(header())
    print(row(json.loads(Path(sys.argv[1]).read_text())))
