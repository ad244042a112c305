"""An outbox row the database did not take is written again until it lands: a StopJob
for an agent another replica holds is never left to its deadline (which would end the
job FORCED while the agent, still connected, ran it on), nor an AssignJob to the
job's timeout. In process, on a real PostgreSQL; the owner's pool refuses its first
connections (as during a restart of the database)."""

from __future__ import annotations

from buildcontrol_server import metrics
from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.domain.agent_commands import AssignCommand, AssignedStep, StopCommand
from buildcontrol_server.replicas.agent_delivery import AgentDelivery

from tests.replicas.lease_replicas import RefusedConnections, replica, until_rows

BUILD = "b0123456789abcdef0123"


async def test_a_stop_and_an_assignment_the_database_refused_are_written_once_it_is_back(
    postgres_url: str,
) -> None:
    async with replica(postgres_url, "owner") as (leases, store):
        refused = RefusedConnections(store.connections, 6)
        delivery = AgentDelivery(store.connections, AgentHub(reconnect_window=1.0), leases)
        retries = metrics.OUTBOX_WRITE_RETRIES._value.get()
        stop = StopCommand(BUILD, f"{BUILD}-j0", "agent-b", "wrong branch", 5.0, 1e9)
        steps = (AssignedStep(0, "make", "make"),)
        assign = AssignCommand(BUILD, f"{BUILD}-j1", "compile", steps, {})
        try:
            delivery.forward_stop(stop)
            delivery.forward_assign("agent-b", assign)
            stop_rows = await until_rows(postgres_url, stop.job_id)
            assign_rows = await until_rows(postgres_url, assign.job_id)
        finally:
            await delivery.stop()
        assert [(r["agent_id"], r["kind"]) for r in stop_rows] == [("agent-b", "stop")]
        assert [(r["agent_id"], r["kind"]) for r in assign_rows] == [("agent-b", "assign")]
        assert refused.left == 0
        assert metrics.OUTBOX_WRITE_RETRIES._value.get() - retries == 6
