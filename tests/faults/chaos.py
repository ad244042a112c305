"""Many walks in a row: `make chaos` (CHAOS_RUNS walks, default 10,000).

    CHAOS_RUNS=200 CHAOS_FIRST_SEED=0 CHAOS_PARALLEL=3 python -m tests.faults.chaos
    CHAOS_SEED=1234 python -m tests.faults.chaos      # one seed, with its whole trace
    CHAOS_IGNORE='SubmitBuild answered|slots'          # leave out known violations
    CHAOS_TRACE=1                                      # print the moves of failing seeds

Prints each failing seed with its violations as it goes, and at the end the count of
runs and of failures. Exits 1 if any run failed."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Iterable

from tests.faults.servers import ServerPool
from tests.faults.walk import Walk, run_seed


async def run_seeds(
    seeds: Iterable[int],
    parallel: int,
    moves: int,
    processes: bool = True,
    verbose: bool = False,
    calm: bool = False,
    progress: int = 0,
) -> tuple[int, list[Walk]]:
    """Run the seeds, `parallel` at a time; the count run and the failing walks."""
    queue = list(seeds)
    trace = os.environ.get("CHAOS_TRACE") == "1"
    failed: list[Walk] = []
    runs = 0
    pool = ServerPool()

    async def worker() -> None:
        nonlocal runs
        while queue:
            seed = queue.pop(0)
            walk = await run_seed(seed, moves, processes, calm, pool)
            runs += 1
            ignored = [part for part in os.environ.get("CHAOS_IGNORE", "").split("|") if part]
            walk.violations = [v for v in walk.violations if not any(part in v for part in ignored)]
            if walk.violations or verbose:
                report(walk, verbose or trace)
            if walk.violations:
                failed.append(walk)
            if progress and runs % progress == 0:
                print(f"chaos: {runs} runs, {len(failed)} failed so far", flush=True)

    try:
        await asyncio.gather(*(worker() for _ in range(parallel)))
    finally:
        await pool.close()
    return runs, failed


def report(walk: Walk, with_trace: bool) -> None:
    print(f"seed {walk.seed}: {len(walk.violations)} violation(s)", flush=True)
    for violation in walk.violations:
        print(f"  ! {violation}", flush=True)
    if with_trace:
        for line in walk.trace:
            print(f"    {line}", flush=True)


def main() -> int:
    logging.basicConfig(level=os.environ.get("CHAOS_LOG", "CRITICAL"))
    moves = int(os.environ.get("CHAOS_MOVES", "30"))
    started = time.monotonic()
    if "CHAOS_SEED" in os.environ:
        seeds = [int(os.environ["CHAOS_SEED"])]
        runs, failed = asyncio.run(run_seeds(seeds, 1, moves, verbose=True))
    else:
        first = int(os.environ.get("CHAOS_FIRST_SEED", "0"))
        count = int(os.environ.get("CHAOS_RUNS", "10000"))
        parallel = int(os.environ.get("CHAOS_PARALLEL", "3"))
        runs, failed = asyncio.run(
            run_seeds(range(first, first + count), parallel, moves, progress=100)
        )
    seconds = time.monotonic() - started
    print(
        f"chaos: {runs} runs, {len(failed)} failed, {seconds:.0f} s;"
        f" failing seeds: {sorted(w.seed for w in failed)}",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
