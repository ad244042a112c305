"""The promise under faults, checked by random walks (tests/faults/walk.py and
reference_walk.py; docs/testing.md says what they drive and check).

FAULTS_RUNS and FAULTS_REFERENCE_RUNS set how many fresh seeds run here (the seeds
change every day, so each CI day explores new ones; FAULTS_FIRST_SEED pins them)."""

from __future__ import annotations

import datetime
import os

import pytest

from tests.faults import fixes, seeds
from tests.faults.chaos import run_seeds
from tests.faults.reference_walk import ReferenceWalk, run_reference_seed
from tests.faults.walk import Walk

RUNS = int(os.environ.get("FAULTS_RUNS", "150"))
REFERENCE_RUNS = int(os.environ.get("FAULTS_REFERENCE_RUNS", "3"))
CALM_RUNS = int(os.environ.get("FAULTS_CALM_RUNS", "30"))
# One run at a time: the machine has two cores, and the timing checks of a walk
# (deadlines, with slack) are kinder to walks that do not compete with each other.
PARALLEL = int(os.environ.get("FAULTS_PARALLEL", "1"))
FIRST_SEED = int(os.environ.get("FAULTS_FIRST_SEED", str(datetime.date.today().toordinal() * 1000)))


def needs(*fix_names: str, open_defects: bool = False) -> pytest.MarkDecorator:
    absent = fixes.missing(*fix_names)
    reasons = [f"finds defects fixed on {', '.join(absent)}"] if absent else []
    if open_defects and fixes.OPEN_DEFECTS:
        reasons.append(f"finds open defects: {'; '.join(fixes.OPEN_DEFECTS)}")
    return pytest.mark.xfail(bool(reasons), reason=" / ".join(reasons), strict=False)


def described(walks: list[Walk] | list[ReferenceWalk]) -> str:
    lines = []
    for walk in walks:
        lines.append(f"seed {walk.seed}:")
        lines.extend(f"  ! {violation}" for violation in walk.violations)
        lines.extend(f"    {move}" for move in walk.trace)
    return "\n".join(lines)


@pytest.mark.timeout(400)
@needs("faults-actors", "faults-protocol", open_defects=True)
async def test_scripted_walks_keep_every_cancel_result_and_slot() -> None:
    runs, failed = await run_seeds(range(FIRST_SEED, FIRST_SEED + RUNS), PARALLEL, moves=30)
    assert runs == RUNS
    assert not failed, described(failed)


@pytest.mark.timeout(240)
@needs("faults-actors", "faults-protocol", open_defects=True)
async def test_seeds_that_failed_once_keep_the_promise() -> None:
    _, failed = await run_seeds(seeds.SCRIPTED, PARALLEL, moves=30)
    assert not failed, described(failed)


@pytest.mark.timeout(240)
@pytest.mark.e2e
@needs("agent-procs", "faults-actors")
async def test_reference_agent_walks_leave_no_build_live_and_no_process_running() -> None:
    failed = []
    for seed in [*seeds.REFERENCE, *range(FIRST_SEED, FIRST_SEED + REFERENCE_RUNS)]:
        walk = await run_reference_seed(seed)
        if walk.violations:
            failed.append(walk)
    assert not failed, described(failed)


@pytest.mark.timeout(180)
async def test_walks_without_faults_find_nothing() -> None:
    """The same walks with every fault rule off: a clean run on today's code, so a
    violation in the walks above is a fault's doing, not the harness's."""
    runs, failed = await run_seeds(
        range(FIRST_SEED, FIRST_SEED + CALM_RUNS), PARALLEL, 30, calm=True
    )
    assert runs == CALM_RUNS
    assert not failed, described(failed)
