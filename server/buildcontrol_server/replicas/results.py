"""An agent's report on a job of a build another replica owns, taken by the replica
holding the agent's stream, goes to the owner's build inbox (durable).

A result (JobFinished, JobStopped) is left there with the job's stops in the agent
outbox confirmed in the same transaction, its slot here freed (a job claimed for this
agent, claims.py), and only then is it acknowledged to the agent, which would
otherwise send it again at its next Hello. A result for a build already over (re-sent
after a reconnect) goes the same way: the owner drops its row. A progress report (JobAccepted,
StepStarted, StepFinished) of a job assigned across replicas is left there as it
comes: the owner's actor applies them in the order they were written."""

from __future__ import annotations

import logging

from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.actors.report_intake import ReportIntake
from buildcontrol_server.agents.hub import AgentHub, AgentSession
from buildcontrol_server.domain.events import (
    AgentReport,
    JobFinishedReport,
    JobStoppedReport,
    report_id_of,
)
from buildcontrol_server.replicas.inbox import BuildInbox
from buildcontrol_server.store.base import BuildStore

log = logging.getLogger(__name__)


class ReplicaReportIntake(ReportIntake):
    def __init__(
        self,
        store: BuildStore,
        registry: Registry,
        hub: AgentHub,
        inbox: BuildInbox,
    ) -> None:
        super().__init__(store, registry, hub)
        self._owned_here = registry.owns
        self._inbox = inbox
        self._agents = hub

    async def settle_not_live(self, session: AgentSession, report: AgentReport) -> None:
        if self._owned_here(report.build_id):
            await super().settle_not_live(session, report)
            return
        if not isinstance(report, (JobFinishedReport, JobStoppedReport)):
            # The owner drops it if the job is no longer the agent's or is over.
            try:
                await self._inbox.forward_progress(session.agent_id, report)
            except Exception as error:  # the job's result settles what it said
                log.warning("report on job %s not left for its owner: %s", report.job_id, error)
            return
        # Left for the owner without reading the build first (a read per result on the
        # cross paths): the owner's drain deletes the row of a build already over or
        # gone (inbox.py), which is what the agent is told here too.
        await self._inbox.forward_result(session.agent_id, report)
        self._agents.release(session.agent_id, report.job_id)
        if report_id_of(report):
            session.acknowledge(report_id_of(report))
