"""What ListAgents shows of each agent."""

from __future__ import annotations

from dataclasses import dataclass

from buildcontrol_server.agents.hub import AgentHub


@dataclass(frozen=True)
class AgentView:
    agent_id: str
    labels: dict[str, str]
    capacity: int
    job_ids: list[str]
    connected: bool
    suspect: bool
    version: str = ""


def agent_views(hub: AgentHub) -> list[AgentView]:
    """Every agent connected or holding jobs, as ListAgents shows it."""
    return [
        AgentView(
            s.agent_id,
            dict(s.labels),
            s.capacity,
            jobs,
            connected,
            hub.is_suspect(s.agent_id),
            s.version,
        )
        for s, connected, jobs in hub.agents()
    ]
