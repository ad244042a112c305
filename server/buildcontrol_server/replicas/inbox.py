"""Commands for builds another replica owns, as rows: the build inbox.

The replica that takes a Cancel for a build it does not own writes the cancel as it
was asked (who, why, grace, when) to `build_inbox` and NOTIFYs the inbox channel
with the build's shard, in one transaction. The owner (the replica serving that
shard) reads the rows of its shards, gives each cancel to the build's actor as if
its own caller had asked, and deletes a row once the actor took it, refused it for
a finished build, or the build is gone. A row whose build has no actor yet (its
shard is being recovered) stays for the next drain: one after every NOTIFY, after
every (re)connect of the LISTEN connection, on taking shards over, and every second
(change_feed.py), so a lost NOTIFY or a dead owner delays a cancel, never loses it.
Applying a row twice (a crash between the actor's commit and the delete) is a second
cancel of a cancelling build: it joins the first, harmlessly.

The same table carries an agent's reports (its results, and JobAccepted and step
reports of a job assigned across replicas) to the owner of their build when another
replica holds the agent's stream (agent_delivery.py); the owner's actor applies them
as if the agent had sent them to it (a repeated one is refused as stale, as on one
server). And it carries an assignment: another replica claimed an offered job for
one of its agents (offers.py); the owner's scheduler hands the job to its actor, or
refuses it if the job no longer waits (the claimer then frees its slot, claims.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.errors import ActorRetired
from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.domain.errors import DomainError, FailedPrecondition, Unavailable
from buildcontrol_server.domain.events import CancelEvent
from buildcontrol_server.domain.model import CancelInfo
from buildcontrol_server.replicas.agent_delivery import RELAYED_HELLO
from buildcontrol_server.replicas.change_feed import INBOX_CHANNEL
from buildcontrol_server.replicas.leases import ShardLeases
from buildcontrol_server.replicas.report_rows import (
    PROGRESS_KIND,
    RESULT_KIND,
    JobResultReport,
    ProgressReport,
    report_body,
    report_of,
    result_body,
)
from buildcontrol_server.replicas.rounds import Rounds
from buildcontrol_server.replicas.unreadable import UNREADABLE, unreadable_row
from buildcontrol_server.store.postgres_connections import PostgresConnections

log = logging.getLogger(__name__)

ASSIGN_KIND = "assign"
HELLO_KIND = "hello"
# Applies an assignment row (build id, body, row id): True once it needs no more.
AssignmentHandler = Callable[[str, str, int], Awaitable[bool]]

WRITE = "INSERT INTO build_inbox (build_id, shard, kind, body) VALUES ($1, $2, $3, $4)"
# The row and its NOTIFY ($5, $6) in one statement in autocommit: one round trip, where
# BEGIN, INSERT, NOTIFY, COMMIT took four (a data-modifying CTE always runs to the end).
WRITE_NOTIFIED = f"WITH w AS ({WRITE}) SELECT pg_notify($5, $6)"
# A result also confirms (deletes) the job's waiting stops for its agent ($7, $8).
WRITE_CONFIRMING = (
    f"WITH w AS ({WRITE}),"
    " c AS (DELETE FROM agent_outbox WHERE agent_id = $7 AND job_id = $8)"
    " SELECT pg_notify($5, $6)"
)
READ = (
    "SELECT id, build_id, kind, body FROM build_inbox WHERE shard = ANY($1::int[])"
    " ORDER BY id LIMIT $2"
)
DELETE = "DELETE FROM build_inbox WHERE id = ANY($1::bigint[])"
# Rows applied per drain (the next drain takes the rest at once).
DRAIN_BATCH = 1_000


def cancel_body(info: CancelInfo) -> str:
    return json.dumps(
        {
            "reason": info.reason,
            "requested_by": info.requested_by,
            "force": info.force,
            "grace_period": info.grace_period,
            "requested_at": info.requested_at,
        }
    )


def cancel_of(body: str) -> CancelInfo:
    fields = json.loads(body)
    return CancelInfo(
        str(fields["reason"]),
        str(fields["requested_by"]),
        bool(fields["force"]),
        float(fields["grace_period"]),
        float(fields["requested_at"]),
    )


class BuildInbox:
    def __init__(
        self, connections: PostgresConnections, leases: ShardLeases, registry: Registry
    ) -> None:
        self._connections = connections
        self._leases = leases
        self._registry = registry
        self._drains = Rounds(self._drain_once, "inbox", _drain_failed)
        # What an assignment row does (offers.py); set by the replica.
        self.assignments: AssignmentHandler | None = None

    # ---- the replica that took the call ----

    async def forward_cancel(self, build_id: str, info: CancelInfo) -> None:
        """Leave the cancel for the build's owner (committed when this returns)."""
        await self._write(WRITE_NOTIFIED, build_id, "cancel", cancel_body(info))

    async def forward_result(self, agent_id: str, report: JobResultReport) -> None:
        """Leave an agent's result for the build's owner (its agent is held here), and
        delete the job's stops waiting for that agent in the same transaction: the
        result confirms them, and the owner, which may apply it at once, never sees the
        build ended with its stops still waiting."""
        body = result_body(agent_id, report)
        await self._write(
            WRITE_CONFIRMING, report.build_id, RESULT_KIND, body, agent_id, report.job_id
        )

    async def forward_progress(self, agent_id: str, report: ProgressReport) -> None:
        """Leave a JobAccepted or step report for the build's owner (as above)."""
        body = report_body(agent_id, report)
        await self._write(WRITE_NOTIFIED, report.build_id, PROGRESS_KIND, body)

    async def forward_hello(self, agent_id: str, build_id: str, running: list[str]) -> None:
        """Tell the build's owner what the agent's Hello here says it runs of the build:
        a job of it the agent no longer runs ends there (LOST, or FORCED if stopping)."""
        body = json.dumps({"agent_id": agent_id, "running": running})
        await self._write(WRITE_NOTIFIED, build_id, HELLO_KIND, body)

    async def _write(self, statement: str, build_id: str, kind: str, body: str, *more: str) -> None:
        shard = self._leases.shard_of(build_id)
        async with self._connections.acquire() as connection:
            await connection.execute(
                statement, build_id, shard, kind, body, INBOX_CHANNEL, str(shard), *more
            )

    # ---- the owner ----

    def woken(self, shards: set[int] | None) -> None:
        """Rows may wait in `shards` (None: any): drain, unless no shard is ours."""
        if shards is not None and shards.isdisjoint(self._leases.serving()):
            return
        self._drains.wake()

    async def gained(self, shards: set[int]) -> None:
        self.woken(None)

    async def releasing(self, shards: set[int]) -> None:
        return None

    async def lost(self, shards: set[int]) -> None:
        return None

    async def stop(self) -> None:
        await self._drains.stop()

    async def _drain_once(self) -> None:
        shards = sorted(self._leases.serving())
        if not shards:
            return
        async with self._connections.acquire() as connection:
            rows = await connection.fetch(READ, shards, DRAIN_BATCH)
        if not rows:
            return
        applied = await asyncio.gather(*(self._apply(row) for row in rows))
        done = [int(row["id"]) for row, finished in zip(rows, applied, strict=True) if finished]
        if done:
            async with self._connections.acquire() as connection:
                await connection.execute(DELETE, done)
        if len(rows) == DRAIN_BATCH:
            self._drains.again()

    async def _apply(self, row: Any) -> bool:
        """Give the row's command to its build's actor: True once it needs no more."""
        build_id, kind, body = str(row["build_id"]), str(row["kind"]), str(row["body"])
        actor = self._registry.local(build_id)
        if actor is None:
            build = await self._registry.context.store.get_build(build_id)
            # Not recovered here yet (or its shard moved on): left for the owner.
            return build is None or build.terminal
        if kind == ASSIGN_KIND:
            handler = self.assignments
            return True if handler is None else await handler(build_id, body, int(row["id"]))
        try:
            command = _command_of(kind, body)
        except UNREADABLE as error:
            unreadable_row("build_inbox", int(row["id"]), kind, error)
            return True
        if isinstance(command, cmd.Cancel):
            return await self._apply_cancel(actor, command)
        actor.tell(command)
        try:
            await command.reply
        except (ActorRetired, Unavailable):
            return False
        except DomainError as refused:  # settled: a stale or repeated report, say
            log.info("inbox %s from agent %s ignored: %s", kind, command.agent_id, refused)
        metrics.REPLICA_INBOX_APPLIED.inc()
        return True

    async def _apply_cancel(self, actor: BuildActor, command: cmd.Cancel) -> bool:
        try:
            await actor.ask(command)
        except FailedPrecondition:
            return True  # finished before the cancel came: the caller is told so
        except (ActorRetired, Unavailable):
            return False
        finally:
            actor.tell(cmd.Unsubscribe(listener=command.listener))
        metrics.REPLICA_INBOX_APPLIED.inc()
        return True


def _command_of(kind: str, body: str) -> cmd.Cancel | cmd.AgentReconnected | cmd.Report:
    """The actor's command a row of `kind` carries (raises one of UNREADABLE)."""
    if kind == "cancel":
        listener: asyncio.Queue[CancelEvent | None] = asyncio.Queue()
        return cmd.Cancel(info=cancel_of(body), listener=listener, received_at=time.perf_counter())
    if kind == HELLO_KIND:
        fields = json.loads(body)
        running = frozenset(str(job_id) for job_id in fields["running"])
        return cmd.AgentReconnected(
            agent_id=str(fields["agent_id"]), running=running, session_id=RELAYED_HELLO
        )
    agent_id, report = report_of(body)
    return cmd.Report(agent_id=agent_id, report=report)


def _drain_failed(error: Exception) -> None:
    if isinstance(error, Unavailable):
        log.info("build inbox not drained now (%s); the next round will", error)
    else:
        log.warning("build inbox not drained now: %s", error)
