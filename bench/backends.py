"""The store backends the benchmarks run on, and their side-by-side table.

`--backend postgresql` runs the key scenarios (1 latency, 2 throughput, 3 burst) on a
SQLite server and then on a PostgreSQL server, in one run (the machine is shared:
ratios hold better than absolute times), and prints one table of both with their
ratios against the targets: PostgreSQL within 1.5x of SQLite's latency and at least
70 % of its throughput.

PostgreSQL is started here as the tests start it (tests/support/postgres_server.py),
but with fsync *on*, as in production; SQLite runs with its production setting too
(WAL, synchronous=NORMAL). Both on this machine's one disk.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

from tests.support.postgres_server import PostgresServer, find_bin_dir

BACKENDS = ("sqlite", "postgresql")
DATABASE = "bench"
# PostgreSQL / SQLite: at most this for latency, at least this for throughput.
LATENCY_RATIO_MAX = 1.5
THROUGHPUT_RATIO_MIN = 0.7

_schemas = itertools.count()


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("bench --backend postgresql: no initdb (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        server.init()
        server.start(fsync=True)
        server.psql(f"CREATE DATABASE {DATABASE}")
        yield server
    finally:
        try:
            server.stop()
        finally:
            server.remove()


def store_flags(server: PostgresServer) -> list[str]:
    """Serve flags of a fresh schema (every server of the run starts empty)."""
    name = f"run_{next(_schemas)}"
    server.psql(f"CREATE SCHEMA {name}", DATABASE)
    return ["--store", f"{server.url(DATABASE)}?search_path={name}"]


def key_numbers(results: dict[str, Any]) -> dict[str, float | None]:
    push = results.get("latency_push") or {}
    stop = push.get("cancel_to_stop") or {}
    throughput = results.get("throughput") or {}
    burst = results.get("burst") or {}
    return {
        "stop_p50_ms": stop.get("p50_ms"),
        "stop_p99_ms": stop.get("p99_ms"),
        "cancels_per_s": throughput.get("best_cancels_per_s"),
        "burst_seconds": burst.get("seconds_to_all_canceled"),
        "burst_commits": burst.get("commits"),
    }


ROWS = (
    ("stop_p50_ms", "1 Cancel → StopJob p50 (ms)", "latency"),
    ("stop_p99_ms", "1 Cancel → StopJob p99 (ms)", "latency"),
    ("cancels_per_s", "2 cancels/s (best level)", "throughput"),
    ("burst_seconds", "3 burst: all CANCELED (s)", "latency"),
    ("burst_commits", "3 burst: commits", ""),
)


def comparison(by_backend: dict[str, dict[str, Any]]) -> dict[str, Any]:
    sqlite, postgres = (key_numbers(by_backend[name]) for name in BACKENDS)
    rows: dict[str, Any] = {}
    for key, _, kind in ROWS:
        a, b = sqlite[key], postgres[key]
        ratio = b / a if a and b is not None else None
        met = None
        if ratio is not None and kind == "latency":
            met = ratio <= LATENCY_RATIO_MAX
        elif ratio is not None and kind == "throughput":
            met = ratio >= THROUGHPUT_RATIO_MIN
        rows[key] = {"sqlite": a, "postgresql": b, "ratio": ratio, "met": met}
    return rows


def comparison_table(compared: dict[str, Any], machine: dict[str, Any], burst: str) -> str:
    lines = [
        f"store backends side by side — machine: {machine['cores']} cores, "
        f"Python {machine['python']}; burst: {burst}",
        "",
        f"  {'':<32}{'SQLite':>10}{'PostgreSQL':>12}{'PG/SQLite':>11}   target",
    ]
    for key, label, kind in ROWS:
        row = compared[key]
        target = (
            f"≤{LATENCY_RATIO_MAX}x"
            if kind == "latency"
            else f"≥{THROUGHPUT_RATIO_MIN:.0%}"
            if kind == "throughput"
            else ""
        )
        verdict = "" if row["met"] is None else ("met" if row["met"] else "MISSED")
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        lines.append(
            f"  {label:<32}{_number(row['sqlite']):>10}{_number(row['postgresql']):>12}"
            f"{ratio:>11}   {target} {verdict}"
        )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"
