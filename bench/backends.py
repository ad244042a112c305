"""The store backends the benchmarks run on, and their side-by-side table.

`--backend postgresql` runs the key scenarios (1 latency, 2 throughput, 3 burst) on a
SQLite server and then on PostgreSQL servers (COMPARED), in one run (the machine is shared:
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
# What the comparison runs: SQLite (WAL, synchronous=NORMAL: no fsync per commit),
# PostgreSQL as shipped (synchronous_commit on: an fsync of the WAL per commit), and
# PostgreSQL with synchronous_commit=off (no fsync per commit, like SQLite's NORMAL:
# a crash of the *database* may lose the last ~0.6 s of commits; a crash of the
# buildcontrol server still loses nothing).
# And SQLite with synchronous=FULL (an fsync per commit): the durability PostgreSQL
# has as shipped, so "sqlite-full" against "postgresql" is the comparison at equal
# durability (a commit survives a power loss on both).
COMPARED = ("sqlite", "sqlite-full", "postgresql", "postgresql-async-commit")
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


def store_flags(server: PostgresServer, backend: str) -> list[str]:
    """Serve flags of `backend` on a fresh schema (every server of the run starts
    empty); query parameters of the URL are session settings."""
    if backend == "sqlite":
        return []
    if backend == "sqlite-full":
        return ["--sqlite-synchronous", "FULL"]
    name = f"run_{next(_schemas)}"
    server.psql(f"CREATE SCHEMA {name}", DATABASE)
    url = f"{server.url(DATABASE)}?search_path={name}"
    if backend == "postgresql-async-commit":
        url += "&synchronous_commit=off"
    return ["--store", url]


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
    ("stop_p50_ms", "1 Cancel→StopJob p50 (ms)", "latency"),
    ("stop_p99_ms", "1 Cancel→StopJob p99 (ms)", "latency"),
    ("cancels_per_s", "2 cancels/s (best level)", "throughput"),
    ("burst_seconds", "3 burst: all CANCELED (s)", "latency"),
    ("burst_commits", "3 burst: commits", ""),
)


def comparison(by_backend: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per key number: each backend's value, and each PostgreSQL's ratio to SQLite."""
    numbers = {name: key_numbers(results) for name, results in by_backend.items()}
    rows: dict[str, Any] = {}
    for key, _, kind in ROWS:
        base = numbers["sqlite"][key]
        row: dict[str, Any] = {name: numbers[name][key] for name in numbers}
        for name in numbers:
            if name == "sqlite":
                continue
            value = numbers[name][key]
            ratio = value / base if base and value is not None else None
            met = None
            if ratio is not None and kind == "latency":
                met = ratio <= LATENCY_RATIO_MAX
            elif ratio is not None and kind == "throughput":
                met = ratio >= THROUGHPUT_RATIO_MIN
            row[f"{name}_ratio"] = ratio
            row[f"{name}_met"] = met
        full, postgres = numbers.get("sqlite-full", {}).get(key), numbers.get("postgresql", {})
        if full and postgres.get(key) is not None:
            # At equal durability: PostgreSQL as shipped against SQLite FULL.
            row["postgresql_vs_full_ratio"] = postgres[key] / full
        rows[key] = row
    return rows


def comparison_table(compared: dict[str, Any], machine: dict[str, Any], burst: str) -> str:
    others = [
        name
        for name in COMPARED
        if name != "sqlite" and f"{name}_ratio" in next(iter(compared.values()))
    ]
    header = f"  {'':<30}{'SQLite':>9}"
    for name in others:
        header += f"{_TITLES[name]:>14}{'ratio':>7}"
    if "sqlite-full" in others and "postgresql" in others:
        header += f"{'PG/FULL':>10}"
    lines = [
        f"store backends side by side — machine: {machine['cores']} cores, "
        f"Python {machine['python']}; burst: {burst}",
        "targets: PostgreSQL latency ≤"
        f"{LATENCY_RATIO_MAX}x SQLite's, throughput ≥{THROUGHPUT_RATIO_MIN:.0%} of it",
        "",
        header,
    ]
    for key, label, _ in ROWS:
        row = compared[key]
        line = f"  {label:<30}{_number(row['sqlite']):>9}"
        for name in others:
            ratio = row[f"{name}_ratio"]
            mark = {True: " ", False: "!", None: " "}[row[f"{name}_met"]]
            shown = f"{ratio:.2f}{mark}" if ratio is not None else "-"
            line += f"{_number(row[name]):>14}{shown:>7}"
        equal = row.get("postgresql_vs_full_ratio")
        if equal is not None:
            line += f"{equal:>10.2f}"
        lines.append(line)
    lines.append("  (! : target missed; last column: PostgreSQL / SQLite FULL, equal durability)")
    return "\n".join(lines)


_TITLES = {
    "sqlite-full": "SQLite FULL",
    "postgresql": "PostgreSQL",
    "postgresql-async-commit": "PG async-c.",
}


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"
