"""Scenario `purge`: cancel latency during a retention purge of a large history,
side by side with the same cancels on the same server while it is quiet.

The server's SQLite file is pre-filled before it starts with `builds` finished builds
(2 jobs of 2 steps each: 7 rows per build), copies of one build written by the real
store, multiplied in SQL (a million builds through the RPCs would take hours here).
Then, on one server with agents holding `2 x cancels` running builds: `cancels`
single cancels one after another while nothing else runs (quiet), then a
Housekeeping.Purge of everything finished before now and, while it runs, the other
`cancels` single cancels. Measured: Cancel sent → ACCEPTED (CANCELING committed: the
write that competes with the purge's transactions) and → the terminal message.
Target: during / quiet p50 and p99 within 1.5.
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2_grpc, housekeeping_pb2, housekeeping_pb2_grpc
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.cancellation import StopTimes
from buildcontrol_server.domain.model import CancelInfo, CancelRecord, ChangeSet
from buildcontrol_server.domain.submission import (
    JobSpec,
    PipelineSpec,
    StageSpec,
    StepSpec,
    new_build,
)
from buildcontrol_server.store.sqlite import SqliteStore
from builds import running
from fleet_control import Fleet
from latency import CancelTimes, cancel_once
from load_agent import PUSH
from server_process import DATA_DIR_PREFIX, start_server
from stats import machine, summary_ms

TARGET_RATIO = 1.5
# 2023-11-14: long past any retention window.
FINISHED_AT = 1_700_000_000.0


async def _template(path: str) -> str:
    """One build of 2 jobs x 2 steps cancelled while QUEUED, written by the store
    itself through the domain's own moves; its id."""
    spec = PipelineSpec(
        pipeline="history",
        stages=(
            StageSpec(
                "all",
                tuple(
                    JobSpec(f"job{j}", tuple(StepSpec(f"echo {j}.{k}") for k in range(2)))
                    for j in range(2)
                ),
            ),
        ),
    )
    build = new_build(spec, FINISHED_AT)
    insert = ChangeSet(new_build=copy.deepcopy(build))
    info = CancelInfo("history", "bench", False, 1.0, FINISHED_AT)
    cancel = cancellation.cancel(build, info, StopTimes(30, 60), FINISHED_AT).changes
    async with SqliteStore(path) as store:
        await store.commit(insert)
        await store.commit(cancel)
        # Its audit record too: a CANCELED build without one would be written again by
        # the server's start-up audit sweep (200,000 of them: minutes before serving).
        await store.commit(ChangeSet(audit=[CancelRecord.of(build)]))
    return build.build_id


def _copies(connection: sqlite3.Connection, table: str, template: str, count: int) -> None:
    """`count` copies of the template's rows of `table`, ids b000…0001 upwards (they
    sort before every real id), each finished a millisecond apart."""
    columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
    new_id = "printf('b%020x', n.i)"
    expressions = {
        "build_id": new_id,
        "job_id": f"{new_id} || substr(job_id, 22)",
        "record": f"replace(record, '{template}', {new_id})",
        "finished_at": "finished_at + n.i * 0.001",
        "requested_at": "requested_at + n.i * 0.001",
    }
    select = ", ".join(expressions.get(c, c) for c in columns)
    where = "build_id = ?" if table != "steps" else "substr(job_id, 1, 21) = ?"
    connection.execute(
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        f" INSERT INTO {table} ({', '.join(columns)}) SELECT {select} FROM n, {table}"
        f" WHERE {where}",
        (count, template),
    )


async def prefilled(path: str, count: int, history_file: Path | None = None) -> float:
    """Fill `path` with `count` finished builds; seconds taken. With `history_file`:
    a copy of it if it holds `count` builds (the same file as a fill would write),
    else the fill, then copied there for the next run."""
    started = time.monotonic()
    # The template build and its `count` copies.
    if history_file is not None and _builds_in(history_file) == count + 1:
        shutil.copyfile(history_file, path)
        # On disk before the server starts, as the fill's own checkpoint leaves it:
        # else the server's first fsync waits for the whole copy.
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return time.monotonic() - started
    await _fill(path, count)
    if history_file is not None:
        shutil.copyfile(path, history_file)
    return time.monotonic() - started


def _builds_in(path: Path) -> int | None:
    if not path.exists():
        return None
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(connection.execute("SELECT count(*) FROM builds").fetchone()[0])
    finally:
        connection.close()


async def _fill(path: str, count: int) -> None:
    template = await _template(path)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN")
        for table in ("builds", "jobs", "steps", "cancel_audit"):
            _copies(connection, table, template, count)
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


async def _sizes_seconds(path: str) -> float:
    """How long the housekeeping's row counts take on this file (the gauges)."""
    async with SqliteStore(path) as store:
        started = time.monotonic()
        await store.retention.sizes()
        return time.monotonic() - started


def _mib(path: str) -> float:
    return Path(path).stat().st_size / 2**20


def _latencies(results: list[CancelTimes]) -> dict[str, dict[str, float]]:
    return {
        "cancel_to_accepted": summary_ms([r.accepted - r.sent for r in results]),
        "cancel_to_terminal": summary_ms([r.terminal - r.sent for r in results]),
    }


async def run(
    builds: int,
    cancels: int,
    agents: int,
    capacity: int,
    history_file: Path | None = None,
    wait_for_purge: bool = True,
) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=DATA_DIR_PREFIX + "purge-"))
    database = str(data_dir / "buildcontrol.sqlite3")
    try:
        fill_seconds = await prefilled(database, builds, history_file)
        sizes_seconds = await _sizes_seconds(database)
        megabytes = _mib(database)
        print(f"  pre-filled {builds} builds in {fill_seconds:.1f}s ({megabytes:.0f} MiB)")
        server = await start_server("--data-dir", str(data_dir), "--housekeeping-interval", "0")
        fleet = await Fleet.start(server.target)
        try:
            await fleet.connect(agents, capacity, PUSH, "purge")
            return await _measure(server.target, fleet, cancels, wait_for_purge) | {
                "prefilled_builds": builds,
                "prefill_seconds": fill_seconds,
                "database_mib_before": megabytes,
                "row_counts_seconds": sizes_seconds,
                "machine": machine(),
            }
        finally:
            await fleet.close()
            await server.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _measure(target: str, fleet: Fleet, cancels: int, wait_for_purge: bool) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = build_control_pb2_grpc.BuildControlStub(channel)
        by_build = sorted(await running(stub, fleet, 2 * cancels, "purge-bench"))
        quiet = [await cancel_once(stub, build_id) for build_id in by_build[:cancels]]
        request = housekeeping_pb2.PurgeRequest()
        request.before.FromNanoseconds(time.time_ns())
        started = time.monotonic()
        purge = asyncio.ensure_future(
            housekeeping_pb2_grpc.HousekeepingStub(channel).Purge(request)
        )
        during: list[CancelTimes] = []
        for build_id in by_build[cancels:]:
            if purge.done():
                break
            during.append(await cancel_once(stub, build_id))
        if not wait_for_purge:
            # The server stops with the purge under way (SIGTERM ends the call).
            purge.cancel()
            await asyncio.gather(purge, return_exceptions=True)
            purged: dict[str, int] | None = None
            purge_seconds = None
        else:
            response = await purge
            purged = {t.table: t.rows for t in response.tables}
            purge_seconds = time.monotonic() - started
    quiet_ms, during_ms = _latencies(quiet), _latencies(during)
    ratios = {
        measure: {q: during_ms[measure][q] / quiet_ms[measure][q] for q in ("p50_ms", "p99_ms")}
        for measure in quiet_ms
    }
    return {
        "quiet": quiet_ms,
        "during_purge": during_ms,
        "ratio": ratios,
        "purged_rows": purged,
        "purge_seconds": purge_seconds,
        "within_target": all(r <= TARGET_RATIO for m in ratios.values() for r in m.values()),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"\npurge: cancels while {result['prefilled_builds']} finished builds are purged"
        f" ({_seconds(result['purge_seconds'])}), beside the same cancels on a quiet server"
        f"   (machine: {result['machine']['cores']} cores)",
        f"{'measure':<24}{'phase':<14}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
    ]
    for measure in ("cancel_to_accepted", "cancel_to_terminal"):
        for phase in ("quiet", "during_purge"):
            row = result[phase][measure]
            lines.append(
                f"{measure:<24}{phase:<14}{row['n']:>6}{row['p50_ms']:>10.2f}"
                f"{row['p99_ms']:>10.2f}{row['max_ms']:>10.2f}"
            )
        ratio = result["ratio"][measure]
        lines.append(
            f"{'':<24}{'ratio':<14}{'':>6}{ratio['p50_ms']:>10.2f}{ratio['p99_ms']:>10.2f}"
        )
    verdict = "within" if result["within_target"] else "NOT within"
    lines.append(f"during / quiet {verdict} {TARGET_RATIO}x (p50 and p99)")
    return "\n".join(lines)


def _seconds(purge_seconds: float | None) -> str:
    return "not waited for" if purge_seconds is None else f"{purge_seconds:.1f}s"
