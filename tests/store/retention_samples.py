"""Builds stored as finished or running at a given time, for the retention tests."""

from __future__ import annotations

import copy

from buildcontrol_server.domain.model import Build, ChangeSet, SubmitRequest
from buildcontrol_server.domain.retention import DAY_SECONDS
from buildcontrol_server.store.base import BuildStore

from tests.support.store_samples import (
    T0,
    canceled,
    start_first_job,
    submitted,
    wide_spec,
)

NOW = T0 + 400 * DAY_SECONDS
WINDOW = 90 * DAY_SECONDS


async def finished(store: BuildStore, finished_at: float, *, key: str | None = None) -> Build:
    """A CANCELED build (2 jobs x 2 steps) that finished at `finished_at`."""
    build, (insert, cancel) = canceled(wide_spec(2, 2), now=finished_at - 5)
    if key is not None:
        insert.submit_request = SubmitRequest("alice", key, "digest", build.build_id)
    await store.commit(insert)
    await store.commit(cancel)
    assert build.finished_at == finished_at
    return build


async def running(store: BuildStore, created_at: float) -> Build:
    build, _ = submitted(wide_spec(2, 2), now=created_at)
    await store.commit(ChangeSet(new_build=copy.deepcopy(build)))
    await store.commit(start_first_job(build, now=created_at + 1))
    return build
