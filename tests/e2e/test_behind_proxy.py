"""A server behind a real HAProxy (deploy/haproxy.cfg, gRPC over h2c), the agent and
the client both going through it, as a deployment behind one address runs: a cancel
from the CLI kills the running step, WatchBuild streams a build to its end, after the
server is SIGKILLed and restarted on the same data dir and port the agent comes back
through the proxy and its build finishes (and the CLI's watch across it carries on), an
idle agent stream outlives the proxy's timeouts, and with two servers behind the proxy
a killed one costs callers no error."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from buildcontrol_client.client import BuildControlClient
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.support.haproxy import HOW_TO_GET, Haproxy, find_haproxy
from tests.support.ports import free_port
from tests.support.processes import (
    BUILDCONTROL,
    WAIT,
    AgentProc,
    ServerProc,
    start_agent,
    start_server,
    step_pids,
    until,
    wait_gone,
)
from tests.support.step_processes import Fifo

TERMINAL = {
    build_pb2.BUILD_STATUS_SUCCEEDED,
    build_pb2.BUILD_STATUS_FAILED,
    build_pb2.BUILD_STATUS_CANCELED,
}


@pytest.fixture
def haproxy_executable() -> str:
    found = find_haproxy()
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the tests behind a proxy: {HOW_TO_GET}")
        pytest.skip(HOW_TO_GET)
    return found


@dataclass
class Proxied:
    server: ServerProc
    proxy: Haproxy
    data_dir: Path
    port: int

    async def restart_killed(self) -> None:
        """SIGKILL the server, then start it again on the same data dir and port."""
        await self.server.kill()
        self.server = await start_server(self.data_dir, *SERVER_FLAGS, port=self.port)


SERVER_FLAGS = ("--default-grace", "5", "--reconnect-window", "30")


@asynccontextmanager
async def proxied_server(
    tmp_path: Path, executable: str, timeouts: Mapping[str, str] = {}
) -> AsyncIterator[Proxied]:
    """A server on a port of its own, and HAProxy in front of it (deploy/haproxy.cfg,
    with `timeouts` changed)."""
    port = free_port()
    data_dir = tmp_path / "data"
    server = await start_server(data_dir, *SERVER_FLAGS, port=port)
    proxy = Haproxy(executable, [server.target], timeouts)
    running = Proxied(server, proxy, data_dir, port)
    try:
        await proxy.start()
        yield running
    finally:
        await proxy.stop()
        if running.server.process.returncode is None:
            assert await running.server.stop() == 0, "the server must exit 0 on SIGTERM"


@pytest.fixture
async def proxied(tmp_path: Path, haproxy_executable: str) -> AsyncIterator[Proxied]:
    async with proxied_server(tmp_path, haproxy_executable) as running:
        yield running


def one_job(command: str, pipeline: str = "proxied") -> build_control_pb2.SubmitBuildRequest:
    return build_control_pb2.SubmitBuildRequest(
        pipeline=pipeline,
        stages=[
            build_control_pb2.StageSpec(
                name="s",
                jobs=[
                    build_control_pb2.JobSpec(
                        name="j",
                        labels={"os": "linux"},
                        steps=[build_control_pb2.StepSpec(command=command)],
                    )
                ],
            )
        ],
    )


def waits_for(gate: Path, fifo: Fifo) -> str:
    """A step that says "ready" on the FIFO, then runs until the gate file exists."""
    return f"echo ready > {fifo.path}; while [ ! -e {gate} ]; do sleep 0.05; done; echo done"


async def cli(*args: str, server: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL,
        args[0],
        "--server",
        server,
        *args[1:],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode == 0, err.decode()
    return out.decode()


def connects(agent: AgentProc) -> int:
    """How often the agent said it connected (its log appears with its first line)."""
    log = agent.log.read_text() if agent.log.exists() else ""
    return len(re.findall(r"connected to \S+ as", log))


async def test_a_cancel_from_the_cli_through_the_proxy_kills_the_running_step(
    proxied: Proxied, agents: list[AgentProc], tmp_path: Path
) -> None:
    target = proxied.proxy.target
    agents.append(await start_agent(target, "proxied-1", tmp_path))
    fifo = Fifo(tmp_path / "ready")
    try:
        async with BuildControlClient(target) as client:
            build = await client.submit(one_job(f"sleep 600 & echo ready > {fifo.path}; wait"))
            assert await fifo.read_line(WAIT) == "ready"
            job_id = (await client.get(build.build_id)).stages[0].jobs[0].job_id
            pids = await step_pids(job_id)
            output = await cli("cancel", build.build_id, "--json", server=target)
            await wait_gone(pids, within=10)
            final = await client.get(build.build_id)
    finally:
        fifo.close()
    lines = [json.loads(line) for line in output.splitlines()]
    assert "accepted" in lines[0] and "finished" in lines[-1]
    assert lines[-1]["finished"]["status"] == "BUILD_STATUS_CANCELED"
    assert final.status == build_pb2.BUILD_STATUS_CANCELED
    assert final.stages[0].jobs[0].outcome == build_pb2.JOB_OUTCOME_GRACEFUL


async def test_watch_build_through_the_proxy_streams_every_change_to_the_end(
    proxied: Proxied, agents: list[AgentProc], tmp_path: Path
) -> None:
    target = proxied.proxy.target
    agents.append(await start_agent(target, "proxied-1", tmp_path))
    gate, fifo = tmp_path / "gate", Fifo(tmp_path / "ready")
    steps: list[int] = []
    try:
        async with BuildControlClient(target) as client:
            build = await client.submit(one_job(waits_for(gate, fifo)))
            events = client.watch(build.build_id)
            first = await anext(events)
            assert first.WhichOneof("event") == "snapshot"
            # The step's start and end arrive on the open stream while it runs.
            assert await fifo.read_line(WAIT) == "ready"
            async for event in events:
                if event.WhichOneof("event") == "step_changed":
                    steps.append(event.step_changed.status)
                    if event.step_changed.status == build_pb2.STEP_STATUS_RUNNING:
                        gate.touch()
            final = await client.get(build.build_id)  # the stream ended: the build is done
    finally:
        fifo.close()
    assert steps == [build_pb2.STEP_STATUS_RUNNING, build_pb2.STEP_STATUS_SUCCEEDED]
    assert final.status == build_pb2.BUILD_STATUS_SUCCEEDED


async def test_the_agent_comes_back_through_the_proxy_after_a_server_sigkill_and_finishes(
    proxied: Proxied, agents: list[AgentProc], tmp_path: Path
) -> None:
    target = proxied.proxy.target
    agents.append(await start_agent(target, "proxied-1", tmp_path))
    agent = agents[-1]
    gate, fifo = tmp_path / "gate", Fifo(tmp_path / "ready")
    try:
        async with BuildControlClient(target) as client:
            build = await client.submit(one_job(waits_for(gate, fifo)))
            assert await fifo.read_line(WAIT) == "ready"
        assert connects(agent) == 1
        # The CLI's watch through the proxy, open across the kill: HAProxy ends its
        # stream without a gRPC status, and the CLI watches again once a server is back.
        watch = await asyncio.create_subprocess_exec(
            *BUILDCONTROL, "watch", build.build_id, "--server", target, "--reconnect-for", "60",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert watch.stdout is not None
        await asyncio.wait_for(watch.stdout.readline(), WAIT)  # it follows the build
        await proxied.restart_killed()
        await until(
            lambda: connects(agent) == 2, within=40, what="the agent's reconnect through the proxy"
        )
        gate.touch()
        async with BuildControlClient(target) as client:
            final = await until_terminal(client, build.build_id)
        _, err = await asyncio.wait_for(watch.communicate(), WAIT)
    finally:
        fifo.close()
    assert final.status == build_pb2.BUILD_STATUS_SUCCEEDED, final
    assert final.stages[0].jobs[0].status == build_pb2.JOB_STATUS_SUCCEEDED
    assert watch.returncode == 0, err.decode()
    assert "fresh snapshot" in err.decode(), "the CLI's watch was not broken by the kill"


async def until_terminal(client: BuildControlClient, build_id: str) -> build_pb2.Build:
    """WatchBuild to its end (it ends when the build is terminal), then the build."""
    async for _ in client.watch(build_id):
        pass
    build = await client.get(build_id)
    assert build.status in TERMINAL
    return build


# The proxy's stream timeouts, shortened from deploy/haproxy.cfg's hour so the test
# takes seconds: still above the agent's heartbeat (every 10 s), which is what keeps an
# idle stream alive through them.
SHORT_TIMEOUT_SECONDS = 15


@pytest.mark.timeout(180)
async def test_an_idle_agent_stream_outlives_the_proxy_timeouts(
    tmp_path: Path, haproxy_executable: str, agents: list[AgentProc]
) -> None:
    timeouts = {name: f"{SHORT_TIMEOUT_SECONDS}s" for name in ("client", "server", "tunnel")}
    async with proxied_server(tmp_path, haproxy_executable, timeouts) as proxied:
        target = proxied.proxy.target
        agents.append(await start_agent(target, "idle-1", tmp_path))
        agent = agents[-1]
        await until(lambda: connects(agent) == 1, what="the agent's connect through the proxy")
        # Not a synchronization: the idleness under test, 2.5 times the timeouts.
        await asyncio.sleep(2.5 * SHORT_TIMEOUT_SECONDS)
        async with BuildControlClient(target) as client:
            build = await client.submit(one_job("echo ran"))
            final = await until_terminal(client, build.build_id)
        assert final.status == build_pb2.BUILD_STATUS_SUCCEEDED
        assert connects(agent) == 1, "the idle stream was ended: the agent had to reconnect"


async def test_with_two_servers_behind_the_proxy_a_killed_one_costs_callers_no_error(
    tmp_path: Path, haproxy_executable: str
) -> None:
    """Each server on its own data dir holds one build, so a ListBuilds answer says
    which one answered."""
    servers = [await start_server(tmp_path / name, *SERVER_FLAGS) for name in ("a", "b")]
    proxy = Haproxy(haproxy_executable, [server.target for server in servers])
    try:
        for name, server in zip(("a", "b"), servers, strict=True):
            async with BuildControlClient(server.target) as direct:
                await direct.submit(one_job("true", pipeline=name))  # no agent: QUEUED
        await proxy.start()
        async with BuildControlClient(proxy.target) as client:

            async def answered_by() -> str:
                builds, _ = await client.list()
                return builds[0].pipeline

            assert {await answered_by() for _ in range(10)} == {"a", "b"}
            await servers[1].kill()
            assert [await answered_by() for _ in range(20)] == ["a"] * 20
    finally:
        await proxy.stop()
        for server in servers:
            if server.process.returncode is None:
                assert await server.stop() == 0
