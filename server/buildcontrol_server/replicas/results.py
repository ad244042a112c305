"""An agent's result for a build another replica owns, taken by the replica holding
the agent's stream: left in the owner's build inbox (durable), with the job's stops in
the agent outbox confirmed in the same transaction, and only then acknowledged to
the agent, which would otherwise send it again at its next Hello."""

from __future__ import annotations

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
        self._builds = store

    async def settle_not_live(self, session: AgentSession, report: AgentReport) -> None:
        if not isinstance(report, (JobFinishedReport, JobStoppedReport)) or self._owned_here(
            report.build_id
        ):
            await super().settle_not_live(session, report)
            return
        build = await self._builds.get_build(report.build_id)
        if build is None or build.terminal:
            await super().settle_not_live(session, report)
            return
        await self._inbox.forward_result(session.agent_id, report)
        if report_id_of(report):
            session.acknowledge(report_id_of(report))
