"""What callers and operators are told: the Welcome carries the server's version, the
Hello the agent's, and ListAgents shows it (the reference agent sends the installed
package's); a second Cancel learns that it joined the first one, and whose it is."""

from __future__ import annotations

from buildcontrol_client.agent import AGENT_VERSION
from buildcontrol_proto.v1 import build_control_pb2
from buildcontrol_server.rpc.agent_convert import MAX_VERSION_LENGTH
from buildcontrol_server.version import version

from tests.support.agent_peer import AgentPeer
from tests.support.pipelines import pipeline
from tests.support.servers import Running


async def test_welcome_and_list_agents_carry_the_versions(server: Running) -> None:
    old = AgentPeer(server.target, "old-agent")
    hello = old.hello()
    hello.agent_version = "0.0.9"
    welcome = await old.connect(hello=hello)
    assert welcome.server_version == version() != "0+unknown"
    boastful = AgentPeer(server.target, "long-version")
    hello = boastful.hello()
    hello.agent_version = "x" * 10_000
    await boastful.connect(hello=hello)
    agents = (await server.stub.ListAgents(build_control_pb2.ListAgentsRequest())).agents
    versions = {a.agent_id: a.version for a in agents}
    assert versions == {"old-agent": "0.0.9", "long-version": "x" * MAX_VERSION_LENGTH}
    await old.leave()
    await boastful.leave()


def test_the_reference_agent_reports_the_installed_version() -> None:
    assert version() == AGENT_VERSION


async def test_a_second_cancel_is_told_it_joined_the_first_and_whose_it_is(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    build = (await server.stub.SubmitBuild(pipeline())).build
    await agent.take_job()
    first = server.stub.Cancel(
        build_control_pb2.CancelRequest(
            build_id=build.build_id, reason="wrong branch", requested_by="alice"
        )
    )
    started = (await first.read()).accepted
    second = server.stub.Cancel(
        build_control_pb2.CancelRequest(
            build_id=build.build_id, reason="me too", requested_by="bob"
        )
    )
    joined = (await second.read()).accepted
    assert (started.joined, joined.joined) == (False, True)
    assert (joined.cancel.requested_by, joined.cancel.reason) == ("alice", "wrong branch")
    first.cancel()
    second.cancel()
    await agent.leave()
