"""The invariant auditor: what must always hold between the store, the build actors
and the agent hub, checked every --audit-interval and at the end of every rpc test.

  build_has_actor       every non-terminal build in the store has a live actor (or is
                        being submitted, or its actor is restarting);
  stopping_has_deadline every STOPPING job on an agent has a stop deadline armed;
  canceling_stops_sent  in a CANCELING build every job on an agent is STOPPING (but
                        cleanup jobs that run), and its StopJob was handed to the
                        agent's current session, or the agent is away and gets it when
                        it reconnects;
  job_held_once         no job holds a slot of two agents;
  agent_within_capacity no agent holds more slots than its capacity.

A violation is counted in buildcontrol_invariant_violations_total{invariant} and
logged at ERROR with the build. Things in motion (a reconnect half done, a commit in
flight) can break an invariant for a moment, so a check looks twice: only what is
still wrong after `confirm_after` seconds is reported."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.facts import ActorFacts
from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.domain.cancellation import cleanup_runs
from buildcontrol_server.domain.states import BuildStatus, JobStatus
from buildcontrol_server.observability.live_builds import LiveBuildGauges
from buildcontrol_server.store.base import BuildStore

log = logging.getLogger(__name__)

INVARIANTS = (
    "build_has_actor",
    "stopping_has_deadline",
    "canceling_stops_sent",
    "job_held_once",
    "agent_within_capacity",
)
# Every invariant's series exists from the start (at 0), so rate() and alerts see it.
for _invariant in INVARIANTS:
    metrics.INVARIANT_VIOLATIONS.labels(invariant=_invariant)

# How long an actor may take to answer Inspect (one busy with a slow commit is
# skipped in this round, not reported).
INSPECT_TIMEOUT = 2.0
# Idle actors checked in place between two yields to the event loop.
INSPECT_SLICE = 500


@dataclass(frozen=True)
class Violation:
    invariant: str
    build_id: str  # "" for a violation of an agent's
    subject: str  # the job or agent it is about
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: build {self.build_id or '-'} {self.subject}: {self.detail}"


class InvariantAuditor:
    def __init__(self, store: BuildStore, registry: Registry, hub: AgentHub) -> None:
        self._store = store
        self._registry = registry
        self._hub = hub

    async def check(self, confirm_after: float = 0.5) -> list[Violation]:
        """Every violation that is still there `confirm_after` seconds after it was
        first seen; each is counted and logged."""
        first = await self._violations()
        if not first:
            return []
        await asyncio.sleep(confirm_after)
        again = set(await self._violations())
        confirmed = [v for v in first if _key(v) in {_key(w) for w in again}]
        for violation in confirmed:
            metrics.INVARIANT_VIOLATIONS.labels(invariant=violation.invariant).inc()
            log.error("invariant violated: %s", violation)
        return confirmed

    async def _violations(self) -> list[Violation]:
        found = [
            Violation("build_has_actor", build_id, "build", "non-terminal in the store, no actor")
            for build_id in await self._store.unfinished_build_ids()
            if self._registry.owns(build_id) and not self._registry.accounted_for(build_id)
        ]
        found += await self._inspect_actors()
        found += self._of_agents()
        return found

    async def _inspect_actors(self) -> list[Violation]:
        """Each live actor checks itself in a state no turn is changing (see
        `_of_actor`): an idle one at once, a busy one in its own turn (an Inspect).
        Most of thousands of live builds are idle; checking them in place spares one
        actor turn (a command, a wake-up, a future) each per round, and the round
        yields to the loop every INSPECT_SLICE actors so it never holds it long."""
        found: list[Violation] = []
        commands: list[cmd.Inspect] = []
        for count, actor in enumerate(self._registry.live(), 1):
            if actor.idle:
                found += self._of_actor(actor.facts())
            elif not (actor.closed or actor.restarting):
                command = cmd.Inspect(check=self._of_actor)
                actor.tell(command)
                commands.append(command)
            if count % INSPECT_SLICE == 0:
                await asyncio.sleep(0)
        if not commands:
            return found
        done, pending = await asyncio.wait([c.reply for c in commands], timeout=INSPECT_TIMEOUT)
        for reply in pending:
            reply.cancel()
        for reply in done:
            if not reply.cancelled() and reply.exception() is None:
                found += reply.result()
        return found

    def _of_actor(self, facts: ActorFacts) -> list[Violation]:
        build = facts.build
        found: list[Violation] = []
        for job in build.jobs():
            stopping = job.status is JobStatus.STOPPING and job.agent_id is not None
            if stopping and job.job_id not in facts.stop_armed:
                found.append(
                    Violation("stopping_has_deadline", build.build_id, job.job_id, "no deadline")
                )
            if build.status is not BuildStatus.CANCELING or not job.on_agent:
                continue
            assert job.agent_id is not None
            if job.status is not JobStatus.STOPPING:
                if not (job.run_on_cancel and cleanup_runs(build)):
                    found.append(
                        Violation(
                            "canceling_stops_sent",
                            build.build_id,
                            job.job_id,
                            f"{job.status.value} in a CANCELING build, not stopping",
                        )
                    )
                continue
            session = self._hub.session(job.agent_id)
            if session is not None and facts.stop_sent.get(job.job_id) != session.session_id:
                found.append(
                    Violation(
                        "canceling_stops_sent",
                        build.build_id,
                        job.job_id,
                        f"no StopJob handed to agent {job.agent_id}'s session {session.session_id}",
                    )
                )
        return found

    def _of_agents(self) -> list[Violation]:
        found: list[Violation] = []
        holdings = self._hub.holdings()
        holders = Counter(job_id for jobs in holdings.values() for job_id in jobs)
        for agent_id, jobs in holdings.items():
            for job_id, build_id in jobs.items():
                if holders[job_id] > 1:
                    found.append(
                        Violation("job_held_once", build_id, job_id, f"also held by {agent_id}")
                    )
        for session, _connected, job_ids in self._hub.agents():
            if len(job_ids) > session.capacity:
                found.append(
                    Violation(
                        "agent_within_capacity",
                        "",
                        session.agent_id,
                        f"holds {len(job_ids)} slots, capacity {session.capacity}",
                    )
                )
        return found


def _key(violation: Violation) -> tuple[str, str, str]:
    return violation.invariant, violation.build_id, violation.subject


async def audit_every(interval: float, auditor: InvariantAuditor, gauges: LiveBuildGauges) -> None:
    """The server's watchdog: refresh the stuck-cancel gauges from the store and check
    the invariants, every `interval` seconds, for as long as the server runs."""
    while True:
        await asyncio.sleep(interval)
        try:
            await gauges.refresh()
            await auditor.check()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The store failing is the usual cause; the next round tries again.
            log.warning("invariant audit round failed", exc_info=True)
