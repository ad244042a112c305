"""Who hears about a build's changes: watchers (every change) and cancel streams (job
results and the terminal message). Queues are filled in the actor's turn, after the
commit, so what a listener reads is always on disk."""

from __future__ import annotations

import asyncio
from typing import Any

from buildcontrol_server.domain.events import (
    BuildChangedEvent,
    CancelEvent,
    CancelFinishedEvent,
    JobChangedEvent,
    JobResult,
    StepChangedEvent,
    WatchChange,
)
from buildcontrol_server.domain.outcome import Outcome


def watch_changes(build_id: str, fx: Outcome) -> list[WatchChange]:
    """Steps, then jobs, then the build: a watcher sees the build's terminal status last."""
    changes: list[WatchChange] = [
        StepChangedEvent(build_id, step.job_id, step.index, step.status, step.exit_code)
        for step, _ in fx.changes.steps.values()
    ]
    changes += [
        JobChangedEvent(job.build_id, job.job_id, job.status, job.outcome, job.agent_id)
        for job, _ in fx.changes.jobs.values()
    ]
    changes += [
        BuildChangedEvent(build.build_id, build.status, build.cancel)
        for build, _ in fx.changes.builds.values()
    ]
    return changes


class BuildListeners:
    def __init__(self, build_id: str) -> None:
        self._build_id = build_id
        self._watchers: list[asyncio.Queue[WatchChange | None]] = []
        self._cancels: list[asyncio.Queue[CancelEvent | None]] = []

    def watch(self, listener: asyncio.Queue[WatchChange | None]) -> None:
        self._watchers.append(listener)

    def cancel_joined(self, listener: asyncio.Queue[CancelEvent | None]) -> None:
        self._cancels.append(listener)

    def forget(self, listener: asyncio.Queue[Any]) -> None:
        self._watchers = [q for q in self._watchers if q is not listener]
        self._cancels = [q for q in self._cancels if q is not listener]

    def changed(self, fx: Outcome) -> None:
        if self._watchers:
            changes = watch_changes(self._build_id, fx)
            for watcher in self._watchers:
                for change in changes:
                    watcher.put_nowait(change)
        for job in fx.finished_jobs:
            result = JobResult(job.build_id, job.job_id, job.status, job.outcome)
            for listener in self._cancels:
                listener.put_nowait(result)

    def finished(self, final: CancelFinishedEvent) -> None:
        """The build is terminal: cancel streams get the last message and end."""
        for listener in self._cancels:
            listener.put_nowait(final)
            listener.put_nowait(None)
        self._cancels.clear()

    def close(self) -> None:
        """The actor stops: every stream still listening ends."""
        for watcher in self._watchers:
            watcher.put_nowait(None)
        for listener in self._cancels:
            listener.put_nowait(None)
        self._watchers.clear()
        self._cancels.clear()
