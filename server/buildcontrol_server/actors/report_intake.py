"""Agent reports on their way to the build actors, and the acknowledgement of results.

An agent keeps each job result (JobFinished, JobStopped) until the server names its
report id in ReportsCommitted, and sends every result it still keeps again in the
Hello of each new stream. So a result is acknowledged only once the server will never
need it again:
- its actor committed it (or found it a duplicate of what is stored),
- or it can never apply: the job is not the agent's, the build is unknown, or the
  build is over in the store (a finished build changes no more).
A result whose commit failed, or that arrived before its build was recovered, is not
acknowledged: the agent sends it again on its next stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.errors import ActorRetired
from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.agents.hub import AgentHub, AgentSession
from buildcontrol_server.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from buildcontrol_server.domain.events import (
    AgentReport,
    JobFinishedReport,
    JobStoppedReport,
    report_id_of,
)
from buildcontrol_server.domain.states import IllegalTransition
from buildcontrol_server.store.base import BuildStore

log = logging.getLogger(__name__)

# Refusals that no re-sending can change: the report is settled, it is acknowledged.
PERMANENT_REFUSALS = (PermissionDenied, NotFound, InvalidArgument, FailedPrecondition)
_SETTLED = (*PERMANENT_REFUSALS, IllegalTransition)


class ReportIntake:
    def __init__(self, store: BuildStore, registry: Registry, hub: AgentHub) -> None:
        self._store = store
        self._registry = registry
        self._hub = hub
        self._checks: set[asyncio.Task[None]] = set()

    def submit(self, session: AgentSession, report: AgentReport) -> asyncio.Future[Any] | None:
        """Queue a report at its build's actor; the future says if it was applied, and
        a result is acknowledged on `session` once it is settled. None: the build is
        not live; then call `settle_not_live`."""
        # Any report is an answer (a suspect agent may get jobs again), and a result
        # frees the slot of a job forced without the agent's word.
        gone = isinstance(report, (JobFinishedReport, JobStoppedReport))
        self._hub.answered(session.agent_id, report.job_id, gone)
        actor = self._registry.get(report.build_id)
        if actor is None:
            log.debug("agent %s reported on a build that is not live: %s", session.agent_id, report)
            return None
        command = cmd.Report(agent_id=session.agent_id, report=report)
        actor.tell(command)
        if gone or report_id_of(report):
            command.reply.add_done_callback(lambda reply: self._settled(session, report, reply))
        return command.reply

    def _settled(
        self, session: AgentSession, report: AgentReport, reply: asyncio.Future[Any]
    ) -> None:
        if isinstance(report, (JobFinishedReport, JobStoppedReport)):
            # Again now that the actor has had the result: a FORCED write that was in
            # flight when it arrived has kept the job's slot since (the agent's word
            # that the job is gone came first, and must still free it).
            self._hub.answered(session.agent_id, report.job_id, True)
        if reply.cancelled() or not report_id_of(report):
            return
        error = reply.exception()
        if error is None or isinstance(error, _SETTLED):
            session.acknowledge(report_id_of(report))
        elif isinstance(error, ActorRetired):
            # Retired between queueing and applying: the store says if it still matters.
            check = asyncio.create_task(self.settle_not_live(session, report))
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)

    async def settle_not_live(self, session: AgentSession, report: AgentReport) -> None:
        """A result on a build without an actor: acknowledged if the store has the build
        over, or has no such build; kept by the agent otherwise (not recovered yet)."""
        report_id = report_id_of(report)
        if not report_id:
            return
        try:
            build = await self._store.get_build(report.build_id)
        except Exception:
            log.warning(
                "could not read build %s to settle a result", report.build_id, exc_info=True
            )
            return
        if build is None or build.terminal:
            session.acknowledge(report_id)

    async def apply_earlier(self, session: AgentSession, reports: Iterable[AgentReport]) -> None:
        """Apply the results a Hello re-sends, before the stream's reconciliation.

        Waits without ever cancelling a reply (a reply cancelled under its actor would
        lose the answer, and the stream may drop meanwhile: the actors still apply
        and commit). A failure other than a settled refusal (the store failing) is
        raised once every reply is in: the stream ends, the agent keeps what was not
        acknowledged and sends it again."""
        replies: list[asyncio.Future[Any]] = []
        for report in reports:
            reply = self.submit(session, report)
            if reply is None:
                await self.settle_not_live(session, report)
            else:
                replies.append(reply)
        if not replies:
            return
        await asyncio.wait(replies)
        failure: BaseException | None = None
        for reply in replies:
            error = None if reply.cancelled() else reply.exception()
            if error is None:
                continue
            if isinstance(error, (*_SETTLED, ActorRetired)):
                log.info("agent %s: re-sent report ignored: %s", session.agent_id, error)
            elif failure is None:
                failure = error
        if failure is not None:
            raise failure
