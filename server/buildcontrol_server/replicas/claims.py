"""The holder's side of a job run on another replica's agent: claiming offers for the
agents connected here, and freeing the slots of such jobs once the store says they
no longer need them.

Only the replica holding an agent's stream hands out the agent's slots, in its own
hub, as it does for its own builds: two replicas never count one agent's slots, so a
claim needs no reservation in the database and the agent's capacity is kept by one
process. A claim round runs when jobs were offered (NOTIFY), when a slot frees here
while offers were left unclaimed, and at the change feed's safety net (about every
second) while a slot is free: it reads the oldest offers of the shards other
replicas serve, gives each an agent by labels and free slots as the scheduler does
(`AgentHub.pick`), holds those slots, and then, in one transaction, deletes the
offer rows it gets (one claimer wins each: `DELETE … RETURNING`) and leaves an
assignment per job in its owner's build inbox (offers.py applies it). The slots of
offers another replica won are released at once. The local scheduler runs in the
loop turn a slot frees, a claim only after its read of the offers: this replica's
own jobs come first.

A slot held here for a job of a build owned elsewhere (claimed here, delivered from
the agent outbox, or claimed by an agent's Hello) is freed when the agent reports the
job's result (results.py), when the agent is lost (the hub), and, since the owner may
refuse the assignment, die, or end the job while the agent is away, when the store
says the job is not on that agent any more and no assignment of it waits in an inbox
(checked at every safety-net wake-up while such slots are held): recovered from the
store, never from another replica's memory."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from buildcontrol_server import metrics
from buildcontrol_server.agents.events import AgentEvent, SlotFree
from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.replicas.change_feed import INBOX_CHANNEL
from buildcontrol_server.replicas.inbox import ASSIGN_KIND
from buildcontrol_server.replicas.leases import ShardLeases
from buildcontrol_server.replicas.offers import assignment_body
from buildcontrol_server.replicas.rounds import Rounds
from buildcontrol_server.replicas.unreadable import UNREADABLE, unreadable_row
from buildcontrol_server.store.postgres_connections import PostgresConnections

log = logging.getLogger(__name__)

# Offers read per round, at most (the next round takes more).
READ_LIMIT = 500
READ = (
    "SELECT o.job_id, o.build_id, o.shard, o.labels, j.status FROM job_offers o"
    " LEFT JOIN jobs j ON j.job_id = o.job_id WHERE NOT (o.shard = ANY($1::int[]))"
    " ORDER BY o.id LIMIT $2"
)
CLAIM = "DELETE FROM job_offers WHERE job_id = ANY($1::text[]) RETURNING job_id"
ASSIGNMENTS = (
    "INSERT INTO build_inbox (build_id, shard, kind, body)"
    " SELECT b, s, $4, x FROM unnest($1::text[], $2::int[], $3::text[]) AS t(b, s, x)"
)
NOTIFY = "SELECT pg_notify($1, s::text) FROM unnest($2::int[]) AS s"
# Of the (agent, job) slots held here for other replicas' builds, those the store says
# are free: the job is not on that agent (over, never assigned, given to another)
# and no assignment of it waits in a build inbox.
FREED = (
    "SELECT h.agent_id, h.job_id FROM unnest($1::text[], $2::text[]) AS h(agent_id, job_id)"
    " LEFT JOIN jobs j ON j.job_id = h.job_id"
    " WHERE (j.job_id IS NULL OR j.agent_id IS DISTINCT FROM h.agent_id"
    " OR j.status NOT IN ('ASSIGNED', 'RUNNING', 'STOPPING'))"
    " AND NOT EXISTS (SELECT 1 FROM build_inbox i WHERE i.kind = $3"
    " AND i.body::json ->> 'job_id' = h.job_id)"
)


@dataclass(frozen=True)
class Claim:
    agent_id: str
    job_id: str
    build_id: str
    shard: int


def _claim_failed(error: Exception) -> None:
    log.info("offers not claimed now (%s); the next round will", error)


class OfferClaims:
    def __init__(
        self, connections: PostgresConnections, hub: AgentHub, leases: ShardLeases
    ) -> None:
        self._connections = connections
        self._hub = hub
        self._leases = leases
        self._claiming: set[str] = set()  # jobs held here, claim not committed yet
        self._unclaimed = True  # the last read left offers (a freed slot may fit)
        self._rounds = Rounds(self._claim_round, "claims", _claim_failed)
        self._check: asyncio.Task[None] | None = None

    def woken(self, offered: bool) -> None:
        """Jobs were offered (True), or it is the safety net's turn (False)."""
        if offered:
            self._unclaimed = True
        else:
            self._check_freed()
        self._claim_soon()

    def agent_event(self, event: AgentEvent) -> None:
        if isinstance(event, SlotFree) and self._unclaimed:
            self._claim_soon()

    async def stop(self) -> None:
        await self._rounds.stop()
        if self._check is not None:
            self._check.cancel()
            await asyncio.gather(self._check, return_exceptions=True)

    # ---- claiming ----

    def _claim_soon(self) -> None:
        if self._hub.any_free_slot():
            self._rounds.wake()

    async def _claim_round(self) -> None:
        if not self._hub.any_free_slot():
            return
        serving = sorted(self._leases.serving())
        async with self._connections.acquire() as connection:
            rows = await connection.fetch(READ, serving, READ_LIMIT)
        claims, stale, left = self._hold_fitting(rows)
        # A freed slot is worth another round only for an offer an agent here fits.
        self._unclaimed = left
        if len(rows) == READ_LIMIT:
            self._rounds.again()
        if not claims and not stale:
            return
        self._claiming.update(claim.job_id for claim in claims)
        try:
            won = await self._commit(claims, stale)
        except BaseException:
            for claim in claims:
                self._hub.release(claim.agent_id, claim.job_id)
            raise
        finally:
            self._claiming.difference_update(claim.job_id for claim in claims)
        for claim in claims:
            if claim.job_id not in won:  # another replica's claim came first
                self._hub.release(claim.agent_id, claim.job_id)
        metrics.OFFERS_CLAIMED.inc(len(won & {claim.job_id for claim in claims}))

    def _hold_fitting(self, rows: list[Any]) -> tuple[list[Claim], list[str], bool]:
        """Hold a slot here for every offer an agent here fits (the oldest first);
        offers whose job no longer waits are stale (deleted with the claim). Also
        says whether an offer left unclaimed fits an agent here (when one frees)."""
        claims: list[Claim] = []
        stale: list[str] = []
        left = False
        fits: dict[str, bool] = {}  # labels (as offered) -> an agent here offers them
        for row in rows:
            job_id, build_id = str(row["job_id"]), str(row["build_id"])
            if row["status"] != "PENDING":
                stale.append(job_id)
                continue
            text = str(row["labels"])
            try:
                labels = _labels_of(text)
            except UNREADABLE as error:
                unreadable_row("job_offers", job_id, "offer", error)
                stale.append(job_id)  # deleted with the claim
                continue
            session = self._hub.pick(labels) if self._hub.any_free_slot() else None
            if session is None:
                if text not in fits:
                    fits[text] = any(s.offers(labels) for s in self._hub.sessions())
                left = left or fits[text]
                continue
            self._hub.hold(session.agent_id, job_id, build_id)
            claims.append(Claim(session.agent_id, job_id, build_id, int(row["shard"])))
        return claims, stale, left

    async def _commit(self, claims: list[Claim], stale: list[str]) -> set[str]:
        async with self._connections.acquire() as connection, connection.transaction():
            rows = await connection.fetch(CLAIM, [c.job_id for c in claims] + stale)
            won = {str(row["job_id"]) for row in rows}
            mine = [claim for claim in claims if claim.job_id in won]
            if mine:
                await connection.execute(
                    ASSIGNMENTS,
                    [claim.build_id for claim in mine],
                    [claim.shard for claim in mine],
                    [assignment_body(claim.job_id, claim.agent_id) for claim in mine],
                    ASSIGN_KIND,
                )
                await connection.execute(NOTIFY, INBOX_CHANNEL, sorted({c.shard for c in mine}))
        return won

    # ---- freeing what the store says is free ----

    def _check_freed(self) -> None:
        if self._check is None or self._check.done():
            self._check = asyncio.get_running_loop().create_task(self._free(), name="remote-slots")

    async def _free(self) -> None:
        held = [
            (agent_id, job_id)
            for agent_id, jobs in self._hub.holdings().items()
            for job_id, build_id in jobs.items()
            if not self._leases.holds(build_id) and job_id not in self._claiming
        ]
        if not held:
            return
        try:
            async with self._connections.acquire() as connection:
                rows = await connection.fetch(
                    FREED, [a for a, _ in held], [j for _, j in held], ASSIGN_KIND
                )
        except Exception as error:
            log.info("slots of other replicas' jobs not checked now: %s", error)
            return
        for row in rows:
            if str(row["job_id"]) in self._claiming:
                continue  # claimed again meanwhile
            self._hub.release(str(row["agent_id"]), str(row["job_id"]))
            metrics.REMOTE_SLOTS_FREED.inc()


def _labels_of(text: str) -> dict[str, str]:
    """An offer's labels (raises one of UNREADABLE)."""
    labels = json.loads(text)
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise TypeError(f"labels are not an object of strings: {text[:100]!r}")
    return labels
