"""What a lone cancel's CANCELING commit costs on each store, part by part.

  flock /tmp/bench.lock .venv/bin/python bench/commit_parts.py [--rounds 8] [--per-round 50]

On a PostgreSQL started as the benchmarks start it (fsync on, backends.py) and on
SQLite files, in interleaved rounds (the machine moves under a run): the round trip
(`SELECT 1`), a bare one-row commit with and without the WAL fsync
(`synchronous_commit` on / off), the CANCELING statement of a one-job build alone as
`unnest` arrays and as a VALUES list (store/postgres_updates.py), and the store's own
commit of it through the group-commit writer (SQLite NORMAL and FULL too). p50 and
p90 of each, in ms. bench/README.md, "A lone cancel traced end to end", reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

import asyncpg
import backends
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.model import ChangeSet
from buildcontrol_server.store import postgres_updates as updates
from buildcontrol_server.store.base import BuildStore
from buildcontrol_server.store.postgres import PostgresStore
from buildcontrol_server.store.postgres_writer import updated_tables
from buildcontrol_server.store.rows import PreparedWrite
from buildcontrol_server.store.sqlite import SqliteStore

from tests.support.store_samples import (
    STOP_TIMES,
    T0,
    cancel_info,
    start_first_job,
    submitted,
    wide_spec,
)

POSTGRES = ("postgresql", "postgresql-async-commit")
Timings = dict[str, list[float]]


async def cancels(store: BuildStore, count: int, start: float) -> list[ChangeSet]:
    """The CANCELING change sets of `count` running one-job builds, not yet written."""
    found = []
    for n in range(count):
        build, changes = submitted(wide_spec(1, 1), start + n)
        await store.commit(changes)
        await store.commit(start_first_job(build, now=start + n + 1))
        found.append(cancellation.cancel(build, cancel_info(), STOP_TIMES, start + count).changes)
    return found


def statement(changes: ChangeSet, listed: bool) -> tuple[str, list[Any]]:
    """The checked statement of `changes`, as VALUES lists or (not `listed`) arrays."""
    tables = updated_tables(PreparedWrite.of(changes))
    bound = updates.VALUES_ROWS_MAX
    # A bound of 0 puts every table in as unnest arrays: the statement as it was.
    updates.VALUES_ROWS_MAX = bound if listed else 0
    try:
        return updates.checked(tables, [])
    finally:
        updates.VALUES_ROWS_MAX = bound


async def timed(timings: Timings, label: str, call: Awaitable[Any]) -> None:
    """Await `call` (a coroutine not started yet) and keep its time under `label`."""
    started = time.perf_counter()
    await call
    timings.setdefault(label, []).append(time.perf_counter() - started)


async def one_round(
    stores: dict[str, BuildStore],
    pending: dict[str, list[ChangeSet]],
    bare: dict[str, asyncpg.Connection],
    per_round: int,
    timings: Timings,
) -> None:
    for name, store in stores.items():
        for _ in range(per_round):
            label = f"{name}: store.commit(CANCELING)"
            await timed(timings, label, store.commit(pending[name].pop()))
    for name, connection in bare.items():
        for _ in range(per_round):
            await timed(timings, f"{name}: round trip (SELECT 1)", connection.execute("SELECT 1"))
            bump = connection.execute("UPDATE bare SET v = v + 1 WHERE id = 1")
            await timed(timings, f"{name}: bare one-row commit", bump)
        for position in range(2 * per_round):
            listed = position % 2 == 0
            query, arguments = statement(pending[f"{name} alone"].pop(), listed)
            label = f"{name}: the statement alone, {'VALUES' if listed else 'arrays'}"
            await timed(timings, label, connection.execute(query, *arguments))


async def measure(rounds: int, per_round: int) -> Timings:
    timings: Timings = {}
    count = rounds * per_round
    with backends.postgres_server() as postgres:
        stores: dict[str, BuildStore] = {
            "sqlite": SqliteStore(str(Path(tempfile.mkdtemp()) / "normal.sqlite3")),
            "sqlite-full": SqliteStore(
                str(Path(tempfile.mkdtemp()) / "full.sqlite3"), synchronous="FULL"
            ),
        }
        urls = {name: backends.store_flags(postgres, name)[1] for name in POSTGRES}
        for name, url in urls.items():
            stores[name] = PostgresStore(url)
        bare: dict[str, asyncpg.Connection] = {}
        try:
            pending: dict[str, list[ChangeSet]] = {}
            for name, store in stores.items():
                await store.open()
                pending[name] = await cancels(store, count, T0)
            for name in POSTGRES:
                # Written by a connection of its own: the store's writer does not see them.
                pending[f"{name} alone"] = await cancels(stores[name], 2 * count, T0 + 10 * count)
                bare[name] = await asyncpg.connect(urls[name])
                await bare[name].execute("CREATE TABLE bare (id INT PRIMARY KEY, v INT)")
                await bare[name].execute("INSERT INTO bare VALUES (1, 0)")
            for _ in range(rounds):
                await one_round(stores, pending, bare, per_round, timings)
        finally:
            for connection in bare.values():
                await connection.close()
            for store in stores.values():
                await store.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=50)
    args = parser.parse_args()
    timings = asyncio.run(measure(args.rounds, args.per_round))
    for label in sorted(timings):
        samples = sorted(timings[label])
        p90 = samples[int(len(samples) * 0.9)]
        print(
            f"  {label:<60} p50 {statistics.median(samples) * 1000:6.3f}"
            f"  p90 {p90 * 1000:6.3f} ms  (n={len(samples)})"
        )


if __name__ == "__main__":
    main()
