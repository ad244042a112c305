"""The owner's side of a job run on another replica's agent: its offers, and the
assignments that come back for them.

A scheduling round on the owner hands its jobs to the agents connected here first
(the direct path). What it leaves waiting is offered (`offer`): a row in
`job_offers` per job (its id, build, shard and labels) and one NOTIFY on the offers
channel, in one transaction, written once per job by one writer task that batches
what the rounds queued meanwhile. A job the owner then assigns to an agent of its own,
or whose build ends, is withdrawn (its row deleted). A write that fails is retried at
the change feed's next safety-net wake-up (about a second).

Another replica with a fitting agent claims the offer (claims.py) and leaves an
assignment (the job, its agent) in this replica's build inbox; `assign` applies it:
the scheduler gives the job up (`Scheduler.take`) if it still waits, its slot is held
here too (so an agent lost for good is told to the build, away_agents.py), and the
build's actor commits ASSIGNED and sends the AssignJob through the agent outbox to
the claimer (agent_delivery.py). An assignment for a job that no longer waits here is
refused (the claimer's store check frees its slot, claims.py)."""

from __future__ import annotations

import asyncio
import json
import logging

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.agent_link import AgentLink
from buildcontrol_server.actors.errors import ActorRetired
from buildcontrol_server.actors.scheduler import ReadyJob, Scheduler
from buildcontrol_server.domain.errors import Unavailable
from buildcontrol_server.replicas.change_feed import OFFERS_CHANNEL
from buildcontrol_server.replicas.leases import ShardLeases
from buildcontrol_server.replicas.unreadable import UNREADABLE, unreadable_row
from buildcontrol_server.store.postgres_connections import PostgresConnections

log = logging.getLogger(__name__)

WRITE = (
    "INSERT INTO job_offers (job_id, build_id, shard, labels)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[])"
    " ON CONFLICT (job_id) DO NOTHING"
)
WITHDRAW = "DELETE FROM job_offers WHERE job_id = ANY($1::text[])"
NOTIFY = "SELECT pg_notify($1, '')"


def assignment_body(job_id: str, agent_id: str) -> str:
    return json.dumps({"job_id": job_id, "agent_id": agent_id})


class JobOffers:
    def __init__(
        self,
        connections: PostgresConnections,
        leases: ShardLeases,
        scheduler: Scheduler,
        link: AgentLink,
    ) -> None:
        self._connections = connections
        self._leases = leases
        self._scheduler = scheduler
        self._link = link
        self._offered: set[str] = set()  # jobs with a row, or one on its way
        self._to_write: dict[str, ReadyJob] = {}
        self._to_withdraw: set[str] = set()
        self._writer: asyncio.Task[None] | None = None

    # ---- the scheduler's Elsewhere ----

    def offer(self, jobs: list[ReadyJob]) -> None:
        new = [job for job in jobs if job.job_id not in self._offered and not job.actor.closed]
        for job in new:
            self._offered.add(job.job_id)
            self._to_write[job.job_id] = job
        if new:
            self._write_soon()

    def withdraw(self, job_ids: list[str]) -> None:
        withdrawn = False
        for job_id in job_ids:
            if job_id not in self._offered:
                continue
            self._offered.discard(job_id)
            if self._to_write.pop(job_id, None) is None:  # its row is written
                self._to_withdraw.add(job_id)
                withdrawn = True
        if withdrawn:
            self._write_soon()

    def woken(self, offered: bool) -> None:
        """The change feed's safety net: a write that failed is tried again."""
        if not offered and (self._to_write or self._to_withdraw):
            self._write_soon()

    # ---- writing ----

    def _write_soon(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name="offers")

    async def _write(self) -> None:
        while self._to_write or self._to_withdraw:
            jobs, self._to_write = self._to_write, {}
            withdrawn, self._to_withdraw = self._to_withdraw, set()
            try:
                await self._commit(list(jobs.values()), sorted(withdrawn))
            except Exception as error:
                # Left for the next safety-net wake-up, unless withdrawn meanwhile.
                log.warning("job offers not written now (%s); again in a second", error)
                self._to_write = {j: job for j, job in jobs.items() if j in self._offered} | (
                    self._to_write
                )
                self._to_withdraw |= withdrawn
                return
            metrics.JOBS_OFFERED.inc(len(jobs))

    async def _commit(self, jobs: list[ReadyJob], withdrawn: list[str]) -> None:
        async with self._connections.acquire() as connection, connection.transaction():
            if withdrawn:
                await connection.execute(WITHDRAW, withdrawn)
            if jobs:
                await connection.execute(
                    WRITE,
                    [job.job_id for job in jobs],
                    [job.build_id for job in jobs],
                    [self._leases.shard_of(job.build_id) for job in jobs],
                    [json.dumps(job.labels, sort_keys=True) for job in jobs],
                )
                await connection.execute(NOTIFY, OFFERS_CHANNEL)

    # ---- an assignment from the replica that claimed an offer ----

    async def assign(self, build_id: str, body: str, row_id: int) -> bool:
        """Apply a claimed offer (a build inbox row): True once it needs no more."""
        try:
            fields = json.loads(body)
            job_id, agent_id = str(fields["job_id"]), str(fields["agent_id"])
        except UNREADABLE as error:
            unreadable_row("build_inbox", row_id, "assign", error)
            return True
        self._offered.discard(job_id)  # its row went with the claim
        self._to_write.pop(job_id, None)
        ready = self._scheduler.take(job_id)
        if ready is None or ready.actor.closed:
            log.info("job %s claimed for agent %s no longer waits here", job_id, agent_id)
            return True
        self._link.hold(agent_id, job_id, build_id)
        command = cmd.Assign(job_id=job_id, agent_id=agent_id)
        ready.actor.tell(command)
        try:
            assigned = bool(await command.reply)
        except (ActorRetired, Unavailable):
            return False
        if assigned:
            metrics.REPLICA_INBOX_APPLIED.inc()
        return True
