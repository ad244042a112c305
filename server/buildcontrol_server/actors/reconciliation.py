"""What an agent's Hello says it runs, against what the server expects of it.

Jobs it runs but must not (unknown, finished, cancelled, someone else's, or already
FORCED because it never confirmed their stop) get a StopJob; jobs the server expects
but the agent no longer runs end at their actors (FORCED if stopping, else LOST);
a FORCED job whose slot was kept frees it when the agent comes back without it."""

from __future__ import annotations

import asyncio

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.agents.hub import AgentHub, AgentSession
from buildcontrol_server.config import Settings
from buildcontrol_server.domain.agent_commands import StopCommand
from buildcontrol_server.domain.events import RunningJobClaim
from buildcontrol_server.store.errors import StoreUnavailable


async def reconcile_hello(
    session: AgentSession,
    running: tuple[RunningJobClaim, ...],
    held_at_hello: dict[str, str],
    hub: AgentHub,
    registry: Registry,
    settings: Settings,
    now: float,
) -> None:
    """`held_at_hello`: the agent's jobs (job_id → build_id) when its Hello came. Jobs
    assigned on this stream since are not judged by the Hello (it was written before
    them); those whose results the Hello re-sent are no longer held."""
    held_now = hub.held(session.agent_id)
    expected = {j: b for j, b in held_at_hello.items() if held_now.get(j) == b}
    claimed = {claim.job_id: claim.build_id for claim in running}
    forced = hub.unconfirmed(session.agent_id)
    for job_id, build_id in claimed.items():
        if not registry.owns(build_id):
            # Another replica's build: its owner reconciles it (replicas/), unless the
            # committed build says the job is over (the owner may not reach this stream).
            if await _over_elsewhere(registry, build_id, job_id, session.agent_id):
                session.send(stop_unexpected(build_id, job_id, session.agent_id, settings, now))
            else:
                # It takes a slot of this agent, which this replica now hands out.
                hub.hold(session.agent_id, job_id, build_id)
            continue
        if expected.get(job_id) != build_id or job_id in forced:
            session.send(stop_unexpected(build_id, job_id, session.agent_id, settings, now))
    replies = []
    for build_id in set(expected.values()):
        actor = registry.get(build_id)
        if actor is None:
            continue
        on_agent = frozenset(j for j, b in claimed.items() if b == build_id)
        command = cmd.AgentReconnected(
            agent_id=session.agent_id, running=on_agent, session_id=session.session_id
        )
        actor.tell(command)
        replies.append(command.reply)
    await asyncio.gather(*replies, return_exceptions=True)
    # Once the actors had the Hello, a FORCED write in flight when it came has kept
    # its job's slot by now: a job the agent still runs gets its stop (it was not
    # FORCED yet when the claims were read), one it no longer runs frees the slot.
    for job_id in hub.unconfirmed(session.agent_id) - forced:
        if job_id in claimed:
            build_id = claimed[job_id]
            session.send(stop_unexpected(build_id, job_id, session.agent_id, settings, now))
    hub.reconnected_running(session.agent_id, set(claimed))


async def _over_elsewhere(registry: Registry, build_id: str, job_id: str, agent_id: str) -> bool:
    """The committed copy of another replica's build says this agent's job must not run
    (unknown while the database cannot be read: then the owner decides, as before)."""
    try:
        build = await registry.context.store.get_build(build_id)
    except StoreUnavailable:
        return False
    job = build.job(job_id) if build is not None else None
    return job is None or job.terminal or job.agent_id != agent_id


def stop_unexpected(
    build_id: str, job_id: str, agent_id: str, settings: Settings, now: float
) -> StopCommand:
    metrics.STOPS_SENT.inc()
    return StopCommand(
        build_id,
        job_id,
        agent_id,
        "the server does not expect this agent to run this job",
        grace_period=settings.default_grace_period,
        deadline=now + settings.default_grace_period + settings.stop_ack_timeout,
    )
