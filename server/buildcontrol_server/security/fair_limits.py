"""Fair limits: how much of the server one principal may hold at once, so one token
(a runaway script, a stolen viewer token) cannot starve everybody else. Each bound is a
`serve` flag; a call past it is refused with RESOURCE_EXHAUSTED naming the bound and
its flag, and nothing is created. Use per bound is a gauge (metrics.py).

The defaults sit well above what a real fleet does (a person watches a few builds, a
CI system keeps hundreds live, an agent holds one stream) and well below what
exhausts a server (10,000 watch streams cost ~330 MB here)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from buildcontrol_server import metrics
from buildcontrol_server.domain.errors import ResourceExhausted


@dataclass(frozen=True)
class FairLimit:
    # The `limit` label of the metrics, e.g. "watch_streams_per_principal".
    name: str
    flag: str
    maximum: int
    # What is counted, for the refusal: "open WatchBuild streams".
    what: str

    def refusal(self, holder: str) -> ResourceExhausted:
        return ResourceExhausted(
            f"{self.what} of {holder[:200]!r}: {self.maximum} already, the most allowed "
            f"({self.flag})"
        )

    def publish(self) -> None:
        metrics.LIMIT_MAX.labels(limit=self.name).set(self.maximum)


class HeldCounts:
    """What each holder (a principal's name, an agent token) has open under one limit."""

    def __init__(self, limit: FairLimit) -> None:
        self.limit = limit
        self._held: Counter[str] = Counter()
        limit.publish()
        metrics.LIMIT_IN_USE.labels(limit=limit.name).set_function(self.largest)

    def largest(self) -> float:
        """The most any one holder has open (read at scrape time, off the loop)."""
        return float(max(list(self._held.values()), default=0))

    def of(self, holder: str) -> int:
        return self._held[holder]

    def add(self, holder: str) -> None:
        """Count one more without the check (builds recovered at start)."""
        self._held[holder] += 1

    def acquire(self, holder: str) -> None:
        """Count one more for `holder`; ResourceExhausted when it has the maximum."""
        if self._held[holder] >= self.limit.maximum:
            metrics.LIMIT_REFUSED.labels(limit=self.limit.name).inc()
            raise self.limit.refusal(holder)
        self._held[holder] += 1

    def release(self, holder: str) -> None:
        self._held[holder] -= 1
        if self._held[holder] <= 0:
            del self._held[holder]

    @contextmanager
    def held(self, holder: str) -> Iterator[None]:
        self.acquire(holder)
        try:
            yield
        finally:
            self.release(holder)


# Each limit's metric label, flag and what it counts (docs/limits.md has the table).
WATCH_STREAMS = (
    "watch_streams_per_principal",
    "--max-watch-streams-per-principal",
    "open WatchBuild streams",
)
LIVE_BUILDS = (
    "live_builds_per_principal",
    "--max-live-builds-per-principal",
    "live (queued or running) builds",
)
AGENT_STREAMS_PER_TOKEN = (
    "agent_streams_per_token",
    "--max-agent-streams-per-token",
    "open agent streams",
)
AGENT_STREAMS = ("agent_streams", "--max-agent-streams", "open agent streams")
HELLO_RUNNING_JOBS = (
    "hello_running_jobs_factor",
    "--hello-running-jobs-factor",
    "running jobs claimed per unit of capacity",
)
STREAMS_PER_CONNECTION = (
    "streams_per_connection",
    "--max-streams-per-connection",
    "calls open on one connection",
)


def limit(kind: tuple[str, str, str], maximum: int) -> FairLimit:
    name, flag, what = kind
    return FairLimit(name, flag, maximum, what)


def holder_of(name: str | None) -> str:
    """The key a principal's use is counted under; with authentication off every
    caller is the same one."""
    return name if name is not None else "anonymous"


def check_hello_claims(
    agent_id: str, capacity: int, running: int, factor: int, max_capacity: int
) -> None:
    """An honest agent runs at most `capacity` jobs; a Hello claiming many more would
    make the server write one StopJob per bogus claim. Refused (not trimmed): the
    excess could be real jobs, and a trimmed claim would leave them running unseen."""
    if capacity > max_capacity:
        metrics.LIMIT_REFUSED.labels(limit="agent_capacity").inc()
        raise ResourceExhausted(
            f"hello.capacity: {capacity} is more than {max_capacity} (--max-agent-capacity)"
        )
    most = capacity * factor
    if running > most:
        metrics.LIMIT_REFUSED.labels(limit=HELLO_RUNNING_JOBS[0]).inc()
        raise ResourceExhausted(
            f"hello.running_jobs: agent {agent_id[:200]!r} claims {running} running jobs, "
            f"more than capacity {capacity} x {factor} (--hello-running-jobs-factor)"
        )
