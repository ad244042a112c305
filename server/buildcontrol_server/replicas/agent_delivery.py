"""Stops and assignments for agents whose stream another replica holds, and the
results they answer.

- `agent_sessions` says which replica holds each agent's stream: every replica
  writes its own connected agents there every second (and forgets those gone).
- The owner of a build hands a StopJob for an agent it does not hold to
  `ReplicaAgentLink.stop`: the stop becomes an `agent_outbox` row and a NOTIFY, in
  one statement. A stop's NOTIFY (on the stops channel) carries the row (id, agent,
  body), so the holder sends it at once without reading it back; an assignment's
  (on the agents channel) names only the agent, and the holder reads its rows.
- The replica holding the agent's stream sends each row once per stream (from the
  NOTIFY, and every second as the safety net, which reads every held agent's rows;
  a stream that reconnects gets the rows again). A row is deleted when the agent
  confirms: its JobStopped or JobFinished for that job, which the holder forwards
  to the owner's build inbox (inbox.py) in the same transaction, before it
  acknowledges the result to the agent. A row whose job ended by any other way goes
  at the holder's next read: the result came to the owner directly (the agent's
  stream moved to the owner after the row was written), or it was forwarded before
  the row was written (a stop re-sent by an actor restarted from the store), or the
  job ended FORCED or LOST. None of those needs the row: an agent still running
  such a job is stopped by its next Hello's reconciliation, as on one server.
- The owner still arms the stop's deadline: an agent that never answers ends FORCED.
- An AssignJob (a job another replica claimed for one of its agents, offers.py) goes
  the same way (kind 'assign'): the holder counts the job against the agent's slots
  and sends it once per stream while the committed job is ASSIGNED to that agent;
  once the agent took it (RUNNING) or it ended, the row is deleted at the next read
  (so a re-sent AssignJob never starts a job the agent already ran; an agent
  ignores one for a job it runs). The owner also holds the slot in its own
  hub and looks at the agent every second: one held by no replica for a reconnect
  window is lost to its builds as on one server (away_agents.py).

Same replica (the owner holds the agent's stream): the direct path, unchanged."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from buildcontrol_server import metrics
from buildcontrol_server.actors.agent_link import LocalAgentLink
from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.domain.agent_commands import AssignCommand, AssignedStep, StopCommand
from buildcontrol_server.domain.states import TERMINAL_JOB
from buildcontrol_server.effects.backoff import capped_exponential
from buildcontrol_server.replicas.change_feed import AGENTS_CHANNEL, STOPS_CHANNEL
from buildcontrol_server.replicas.leases import ShardLeases
from buildcontrol_server.replicas.rounds import Rounds
from buildcontrol_server.replicas.unreadable import UNREADABLE, known_fields, unreadable_row
from buildcontrol_server.store.postgres_connections import PostgresConnections

log = logging.getLogger(__name__)

SESSIONS_HELD = (
    "INSERT INTO agent_sessions (agent_id, instance_id, updated_at)"
    " SELECT unnest($1::text[]), $2, now() ON CONFLICT (agent_id)"
    " DO UPDATE SET instance_id = EXCLUDED.instance_id, updated_at = now()"
)
SESSIONS_GONE = (
    "DELETE FROM agent_sessions WHERE instance_id = $1 AND NOT (agent_id = ANY($2::text[]))"
)
WRITE = (
    "INSERT INTO agent_outbox (agent_id, build_id, job_id, body, kind) VALUES ($1, $2, $3, $4, $5)"
)
# The row and its NOTIFY ($6, $7) in one statement in autocommit: one round trip.
WRITE_NOTIFIED = f"WITH w AS ({WRITE}) SELECT pg_notify($6, $7)"
# A stop's NOTIFY ($6) carries the row itself (its id, agent and body), so the holder
# sends it without reading the row back. Mostly a few hundred bytes; a long reason
# outside ASCII (escaped twice as JSON) can pass the 8,000 bytes PostgreSQL takes
# in a payload, and a refused NOTIFY would refuse the row with it: such a row is
# written with the hint instead ($7, the agent's id), and the holder reads it.
NOTIFY_PAYLOAD_MAX = 7_999
WRITE_STOP_CARRIED = (
    f"WITH w AS ({WRITE} RETURNING id), c AS (SELECT json_build_object('agent_id',"
    " $1::text, 'id', w.id, 'body', $4::text)::text AS row FROM w)"
    f" SELECT CASE WHEN octet_length(c.row) <= {NOTIFY_PAYLOAD_MAX} THEN pg_notify($6, c.row)"
    " ELSE pg_notify($7, $1) END FROM c"
)
# A replica of a version before it (it listens on AGENTS_CHANNEL only) sends such a
# stop at its next safety-net read, within a second: only during a rolling upgrade.
# A StopJob row is sent only while its job has not ended ($2: the terminal statuses),
# an AssignJob row only while its job is ASSIGNED to the row's agent; the others go.
READ = (
    "SELECT o.id, o.agent_id, o.kind, o.body, COALESCE(CASE WHEN o.kind = 'stop'"
    " THEN j.status <> ALL($2::text[]) ELSE j.status = 'ASSIGNED'"
    " AND j.agent_id IS NOT DISTINCT FROM o.agent_id END, false) AS wanted"
    " FROM agent_outbox o LEFT JOIN jobs j ON j.job_id = o.job_id"
    " WHERE o.agent_id = ANY($1::text[]) ORDER BY o.id"
)
TERMINAL_JOB_STATUSES = sorted(TERMINAL_JOB)
# A row the database did not take is written again after this long, doubling up to
# WRITE_RETRY_MAX.
WRITE_RETRY_FIRST = 0.05
WRITE_RETRY_MAX = 2.0
DONE = "DELETE FROM agent_outbox WHERE id = ANY($1::bigint[])"
STOP_KIND = "stop"
ASSIGN_KIND = "assign"

OutboxCommand = StopCommand | AssignCommand
# The session id of an agent's Hello relayed by the replica holding its stream to the
# owner of a build it had jobs of (replicas/control.py, inbox.py).
RELAYED_HELLO = "relayed-by-its-holder"


def stop_body(stop: StopCommand) -> str:
    # requested_at is a perf_counter() of the owner's process: meaningless elsewhere.
    return json.dumps(dataclasses.asdict(dataclasses.replace(stop, requested_at=None)))


def stop_of(body: str) -> StopCommand:
    return StopCommand(**known_fields(StopCommand, json.loads(body)))


def assign_body(command: AssignCommand) -> str:
    return json.dumps(dataclasses.asdict(command))


def assign_of(body: str) -> AssignCommand:
    fields = known_fields(AssignCommand, json.loads(body))
    steps = tuple(AssignedStep(**known_fields(AssignedStep, step)) for step in fields.pop("steps"))
    secret = tuple(fields.pop("secret_env_names"))
    return AssignCommand(steps=steps, secret_env_names=secret, **fields)


def command_of(kind: str, body: str) -> OutboxCommand:
    return assign_of(body) if kind == ASSIGN_KIND else stop_of(body)


def _read_failed(error: Exception) -> None:
    log.info("agent outbox not read now (%s); the next round will", error)


def _commands_of(rows: list[Any]) -> tuple[dict[int, OutboxCommand], list[int]]:
    """The commands of the rows still wanted, by row id, and the ids of those that
    cannot be read (logged and counted: their DONE deletes them)."""
    commands: dict[int, OutboxCommand] = {}
    unreadable: list[int] = []
    for row in rows:
        if not row["wanted"]:
            continue
        row_id, kind = int(row["id"]), str(row["kind"])
        try:
            commands[row_id] = command_of(kind, str(row["body"]))
        except UNREADABLE as error:
            unreadable_row("agent_outbox", row_id, kind, error)
            unreadable.append(row_id)
    return commands, unreadable


class AgentDelivery:
    def __init__(
        self, connections: PostgresConnections, hub: AgentHub, leases: ShardLeases
    ) -> None:
        self._connections = connections
        self._hub = hub
        self._leases = leases
        self._sent: dict[int, str] = {}  # outbox row -> the session it was sent on
        self._writes: set[asyncio.Task[None]] = set()
        self._drains = Rounds(self._send_waiting, "agents", _read_failed)
        # Agents whose rows the next round reads (NOTIFYs), and whether it reads all.
        self._named: set[str] = set()
        self._everyone = False

    # ---- the owner ----

    def forward_stop(self, stop: StopCommand) -> None:
        """Leave the stop for whichever replica holds the agent (never blocks)."""
        self._spawn(self._write(stop.agent_id, stop, STOP_KIND, stop_body(stop)))

    def forward_assign(self, agent_id: str, command: AssignCommand) -> None:
        """Leave the AssignJob for whichever replica holds the agent (never blocks)."""
        self._spawn(self._write(agent_id, command, ASSIGN_KIND, assign_body(command)))

    def _spawn(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, agent_id: str, command: OutboxCommand, kind: str, body: str) -> None:
        """Write the row, again and again until the database takes it. Given up, a
        stop's deadline would end the job FORCED while the agent ran it on (nothing
        else tells an agent that stays connected), and an assignment would wait for
        the job's timeout. A row of a job that ended meanwhile is deleted unsent at
        the holder's next read (READ's `wanted`)."""
        for attempt in itertools.count(1):
            if kind == STOP_KIND:
                statement, notify = WRITE_STOP_CARRIED, [STOPS_CHANNEL, AGENTS_CHANNEL]
            else:
                statement, notify = WRITE_NOTIFIED, [AGENTS_CHANNEL, agent_id]
            try:
                async with self._connections.acquire() as connection:
                    await connection.execute(
                        statement,
                        *(agent_id, command.build_id, command.job_id, body, kind),
                        *notify,
                    )
                break
            except Exception as error:
                delay = capped_exponential(attempt, WRITE_RETRY_FIRST, WRITE_RETRY_MAX)
                log.warning(
                    "%s of job %s not left for agent %s yet (attempt %d, again in %.1f s): %s",
                    *(kind, command.job_id, agent_id, attempt, delay, error),
                )
                metrics.OUTBOX_WRITE_RETRIES.inc()
                await asyncio.sleep(delay)
        (metrics.STOPS_FORWARDED if kind == STOP_KIND else metrics.ASSIGNS_FORWARDED).inc()

    # ---- the replica holding the agent ----

    def woken(self, agent_id: str | None) -> None:
        """Rows may wait for `agent_id` (None: any agent; also the sessions' sync)."""
        if agent_id is None:
            self._everyone = True
        elif self._hub.session(agent_id) is None:
            return
        else:
            self._named.add(agent_id)
        self._drains.wake()

    def carried(self, payload: str) -> None:
        """The stop row a NOTIFY carried, sent once per stream as if read from the
        table, if its agent is held here. Its job was STOPPING when the row was
        written; if it ended since, the agent ignores a stop of a job it does not run
        (as when the job ends right after a read)."""
        try:
            row = json.loads(payload)
            session = self._hub.session(str(row["agent_id"]))
            row_id = int(row["id"])
            stop = stop_of(str(row["body"]))
        except UNREADABLE as error:  # the read finds the row, and deletes it
            log.warning("a stop NOTIFY that cannot be read (%r): left to the read", error)
            return
        if session is None or session.closed or self._sent.get(row_id) == session.session_id:
            return
        session.send(stop)
        self._sent[row_id] = session.session_id

    async def _send_waiting(self) -> None:
        """Send the rows waiting for the agents held here: those NOTIFYs named (only
        their rows are read), or every one's (the safety net, which also writes this
        replica's sessions and forgets the rows sent and gone since)."""
        everyone, self._everyone = self._everyone, False
        named, self._named = self._named, set()
        sessions = {s.agent_id: s for s in self._hub.sessions() if not s.closed}
        held = sorted(sessions if everyone else named & sessions.keys())
        # Only rows sent before the read can be told gone by it: one a NOTIFY carried
        # while it ran may be missing from its rows and still wait.
        sent_before = set(self._sent)
        async with self._connections.acquire() as connection:
            if everyone:
                await connection.execute(SESSIONS_HELD, held, self._leases.instance_id)
                await connection.execute(SESSIONS_GONE, self._leases.instance_id, held)
            rows = await connection.fetch(READ, held, TERMINAL_JOB_STATUSES) if held else []
            commands, unreadable = _commands_of(rows)
            # Assignments the agent took, stops and assignments of jobs that ended, and
            # rows this version cannot read.
            done = [int(row["id"]) for row in rows if not row["wanted"]] + unreadable
            if done:
                await connection.execute(DONE, done)
        for row in rows:
            session = sessions.get(str(row["agent_id"]))
            row_id = int(row["id"])
            command = commands.get(row_id)
            # Looked at after the DONE's await: a NOTIFY may have carried it meanwhile.
            if command is None or session is None or self._sent.get(row_id) == session.session_id:
                continue
            if isinstance(command, AssignCommand):
                # Counted here like a job of this replica's (claims.py frees it).
                self._hub.hold(session.agent_id, command.job_id, command.build_id)
            session.send(command)
            self._sent[row_id] = session.session_id
        if everyone:
            waiting = {int(row["id"]) for row in rows}
            for row_id in sent_before - waiting:
                del self._sent[row_id]  # confirmed (deleted) or its agent left

    async def stop(self) -> None:
        for task in self._writes:
            task.cancel()
        await self._drains.stop()
        await asyncio.gather(*self._writes, return_exceptions=True)


class ReplicaAgentLink(LocalAgentLink):
    """The AgentLink of a replica: the local hub's stream when this replica holds
    the agent's, else the agent outbox (AgentDelivery)."""

    def __init__(
        self, hub: AgentHub, delivery: AgentDelivery, watch: Callable[[str, str, str], None]
    ) -> None:
        """`watch(agent, job, build)`: an agent held elsewhere was given a job
        (away_agents.py looks at it until the job ends)."""
        super().__init__(hub)
        self._delivery = delivery
        self._watch = watch

    def is_latest(self, agent_id: str, session_id: str) -> bool:
        if session_id == RELAYED_HELLO:
            # The holder's word on the agent, unless its stream is here now (then the
            # agent's own Hello here judges).
            return self._hub.session(agent_id) is None
        return super().is_latest(agent_id, session_id)

    def stop(self, stop: StopCommand) -> str | None:
        if self._hub.session(stop.agent_id) is None:
            self._delivery.forward_stop(stop)
            return None
        return super().stop(stop)

    def assign(self, agent_id: str, command: AssignCommand) -> str | None:
        if self._hub.session(agent_id) is None:
            self._delivery.forward_assign(agent_id, command)
            # An agent held by no replica for a reconnect window is lost to the build.
            self._watch(agent_id, command.job_id, command.build_id)
            return None
        return super().assign(agent_id, command)
