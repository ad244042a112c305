"""One seeded random walk of scripted agents against a real server.

The seed decides every move (which rule, which build, which agent, what the agent
answers); the interleaving with the server's tasks and timers is the machine's. A
failing seed reproduces the same sequence of moves (printed in the trace), which is
what finds the same defect again, though not always at the same step."""

from __future__ import annotations

import asyncio
import random
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2

from tests.faults.cancels import CancelWatch
from tests.faults.scripted_agent import ScriptedAgent
from tests.faults.servers import ServerPool, Timers, WalkServer

SHORT = Timers(stop_ack_timeout=0.3, reconnect_window=0.4)
LONG = Timers(stop_ack_timeout=30.0, reconnect_window=30.0)
# Bounds of one run and of stopping its server: past them the run failed (it hung).
RUN_LIMIT = 90.0
STOP_LIMIT = 20.0


@dataclass
class Submitted:
    build_id: str
    jobs: int


@dataclass
class Walk:
    seed: int
    server: WalkServer
    timers: Timers
    rng: random.Random
    agents: list[ScriptedAgent] = field(default_factory=list)
    builds: list[Submitted] = field(default_factory=list)
    cancels: list[CancelWatch] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    started: float = 0.0
    # Builds whose Cancel was refused FAILED_PRECONDITION: fine only if they are terminal.
    refused_as_finished: set[str] = field(default_factory=set)
    calm: bool = False
    # The labels of this walk's jobs and agents (walks may share a server).
    labels: dict[str, str] = field(default_factory=dict)

    def note(self, what: str) -> None:
        """A line of the trace, with the seconds since the run started."""
        loop = asyncio.get_running_loop()
        if not self.trace:
            self.started = loop.time()
        self.trace.append(f"{loop.time() - self.started:6.2f} {what}")

    # ---- the rules --------------------------------------------------------------------

    async def submit(self) -> None:
        jobs = self.rng.choice((1, 1, 2, 3))
        request = build_control_pb2.SubmitBuildRequest(
            pipeline="faults",
            stages=[
                build_control_pb2.StageSpec(
                    name="s",
                    jobs=[
                        build_control_pb2.JobSpec(
                            name=f"j{i}",
                            labels=self.labels,
                            steps=[build_control_pb2.StepSpec(command="sleep 600")],
                        )
                        for i in range(jobs)
                    ],
                )
            ],
        )
        try:
            response = await self.server.stub.SubmitBuild(request, timeout=10)
        except grpc.aio.AioRpcError as error:
            self.note(f"submit refused {error.code().name}")
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                self.violations.append(
                    f"SubmitBuild answered {error.code().name} ({error.details()}),"
                    " not UNAVAILABLE, during a fault"
                )
                self.violations = list(dict.fromkeys(self.violations))  # once per run
            return
        self.builds.append(Submitted(response.build.build_id, jobs))
        self.note(f"submit {response.build.build_id} ({jobs} jobs)")

    def _cancel(self, build_id: str, force: bool) -> None:
        grace = round(self.rng.uniform(0, 0.3), 2)
        watch = CancelWatch(build_id, force, grace, asyncio.get_running_loop().time())
        watch.start(self.server.stub, "faults walk")
        self.cancels.append(watch)
        self.note(f"{'force' if force else 'cancel'} {build_id} grace {grace}")

    async def cancel(self) -> None:
        if self.builds:
            self._cancel(self.rng.choice(self.builds).build_id, self.rng.random() < 0.2)

    async def force(self) -> None:
        """Escalate a cancel under way."""
        accepted = [c for c in self.cancels if c.accepted_at is not None and not c.done]
        if accepted:
            self._cancel(self.rng.choice(accepted).build_id, True)

    def _agent(self) -> ScriptedAgent:
        return self.rng.choice(self.agents)

    async def connect(self) -> None:
        agent = self._agent()
        how = self.rng.choices(("welcome", "drop-before-welcome", "drop-after-welcome"), (6, 2, 2))[
            0
        ]
        self.note(f"{agent.agent_id} connect {how}: {await agent.connect(how)}")

    async def handle(self) -> None:
        """Deliver the next server message to an agent that has one."""
        waiting = [a for a in self.agents if a.peer is not None and not a.peer.received.empty()]
        if waiting:
            agent = self.rng.choice(waiting)
            message = agent.next_message()
            assert message is not None
            self.note(f"{agent.agent_id} {agent.handle(message, self.rng)}")

    async def calm_handle(self) -> None:
        waiting = [a for a in self.agents if a.peer is not None and not a.peer.received.empty()]
        if waiting:
            agent = self.rng.choice(waiting)
            agent.settle(agent.next_message())

    async def drop(self) -> None:
        agent = self._agent()
        if agent.connected and agent.held and self.rng.random() < 0.5:
            held = self.rng.choice(list(agent.held.values()))
            if held.accepted:
                agent.finish(held, succeeded=True)
                self.note(f"{agent.agent_id} finishes {held.job_id} and drops (mid-report)")
        else:
            self.note(f"{agent.agent_id} drops")
        await agent.drop()

    async def crash(self) -> None:
        agent = self._agent()
        self.note(f"{agent.agent_id} crashes (stream cut, memory lost)")
        await agent.crash()

    async def late_accept(self) -> None:
        agent = self._agent()
        waiting = [h for h in agent.held.values() if not h.accepted]
        if waiting and agent.connected:
            held = self.rng.choice(waiting)
            agent.accept(held)
            self.note(f"{agent.agent_id} late accept {held.job_id} (stop seen: {held.stop_seen})")

    async def finish(self) -> None:
        agent = self._agent()
        running = [h for h in agent.held.values() if h.accepted]
        if running:
            held = self.rng.choice(running)
            succeeded = self.rng.random() < 0.8
            agent.finish(held, succeeded)
            self.note(f"{agent.agent_id} finished {held.job_id} ok={succeeded}")

    async def answer_stop(self) -> None:
        agent = self._agent()
        stopping = [h for h in agent.held.values() if h.stop_seen and h.accepted]
        if stopping:
            held = self.rng.choice(stopping)
            agent.stopped(held, graceful=self.rng.random() < 0.7)
            self.note(f"{agent.agent_id} stopped {held.job_id} late")

    async def duplicate(self) -> None:
        agent = self._agent()
        if agent.sent_results and agent.connected:
            result = self.rng.choice(agent.sent_results)
            agent.send(result.message)
            self.note(f"{agent.agent_id} re-sends its result for {result.job_id}")

    async def reorder(self) -> None:
        """Reports out of order: a job's acceptance and start after its result."""
        agent = self._agent()
        if agent.sent_results and agent.connected:
            result = self.rng.choice(agent.sent_results)
            ids = {"build_id": result.build_id, "job_id": result.job_id}
            agent.send(agent_pb2.ConnectRequest(step_started=agent_pb2.StepStarted(**ids)))
            agent.send(agent_pb2.ConnectRequest(job_accepted=agent_pb2.JobAccepted(**ids)))
            self.note(f"{agent.agent_id} reports {result.job_id} started after its result")

    async def store_failure(self) -> None:
        if self.server.outage is not None:
            seconds = round(self.rng.uniform(0.1, 0.8), 2)
            self.server.outage.fail_for(seconds)
            self.note(f"store writes fail for {seconds} s")

    async def server_kill(self) -> None:
        if self.server.killable:
            self.note("server SIGKILL and restart")
            for watch in self.cancels:
                if not watch.done:
                    watch.cut_by_kill = True
            started = asyncio.get_running_loop().time()
            await self.server.kill_and_restart()
            self.server.down_seconds += asyncio.get_running_loop().time() - started
            for agent in self.agents:
                agent.peer = None  # their streams broke with the server

    async def pause(self) -> None:
        # A random gap so timers and in-flight work interleave with the next move; not a
        # synchronization (nothing waits for anything to happen).
        seconds = round(self.rng.uniform(0, 0.1), 3)
        await asyncio.sleep(seconds)

    def rules(self) -> list[tuple[Callable[[], Awaitable[None]], float]]:
        if self.calm:
            # No faults at all: agents take jobs, finish them and answer every stop.
            return [
                (self.submit, 3),
                (self.cancel, 2),
                (self.force, 0.5),
                (self.calm_handle, 8),
                (self.finish, 1.5),
                (self.pause, 2),
            ]
        return [
            (self.submit, 3),
            (self.cancel, 2),
            (self.force, 0.7),
            (self.connect, 1.5),
            (self.handle, 8),
            (self.drop, 1),
            (self.crash, 0.4),
            (self.late_accept, 1),
            (self.finish, 1.5),
            (self.answer_stop, 1),
            (self.duplicate, 0.7),
            (self.reorder, 0.5),
            (self.store_failure, 0.6 if self.server.outage is not None else 0),
            (self.server_kill, 0.5 if self.server.killable else 0),
            (self.pause, 2),
        ]

    async def run(self, moves: int) -> None:
        rules = self.rules()
        actions = [rule for rule, _ in rules]
        weights = [weight for _, weight in rules]
        for agent in self.agents:
            self.note(f"{agent.agent_id} connect: {await agent.connect('welcome')}")
        for _ in range(moves):
            await self.rng.choices(actions, weights)[0]()


def choose_setup(seed: int, processes: bool) -> tuple[random.Random, Timers, bool]:
    """The run's dice, its timers, and whether its server is a process."""
    rng = random.Random(seed)
    timers = SHORT if rng.random() < 0.6 else LONG
    as_process = processes and rng.random() < 0.12
    return rng, timers, as_process


async def run_seed(
    seed: int,
    moves: int = 30,
    processes: bool = True,
    calm: bool = False,
    pool: ServerPool | None = None,
) -> Walk:
    """Walk, settle, check; the returned walk holds the trace and the violations.
    With a `pool` the server may be one an earlier walk left clean (servers.py)."""
    rng, timers, as_process = choose_setup(seed, processes)
    servers = pool or ServerPool()
    try:
        server = await servers.take(as_process, timers)
    except Exception as error:  # a failed start is this seed's failure, not the run's
        walk = Walk(seed, WalkServer(), timers, rng, calm=calm)
        walk.violations.append(f"the server did not start: {raised(error)}")
        return walk
    walk = Walk(seed, server, timers, rng, calm=calm, labels={"pool": f"faults-{seed}"})
    walk.note(
        f"seed {seed}: {'process' if as_process else 'in-process'} server,"
        f" {'short' if timers.short else 'long'} timers{', no faults' if calm else ''}"
    )
    # The second agent of a walk takes stop batches (chosen without the walk's dice,
    # so a one-agent walk stays what it was).
    walk.agents = [
        ScriptedAgent(
            f"{seed}-agent-{n}",
            server.target,
            capacity=rng.choice((1, 2, 3)),
            labels=walk.labels,
            batches=n == 1,
        )
        for n in range(rng.choice((1, 2, 3)))
    ]
    try:
        async with asyncio.timeout(RUN_LIMIT) as limit:
            await _walk_and_check(walk, moves)
    except Exception as error:  # reported with the seed, so the other seeds still run
        if isinstance(error, TimeoutError) and limit.expired():
            walk.violations.append(f"the run hung (> {RUN_LIMIT:g} s) after: {walk.trace[-1]}")
        else:
            walk.violations.append(f"the walk raised {raised(error)} after: {walk.trace[-1]}")
    finally:
        for watch in walk.cancels:
            await watch.stop_following()
        await _close(walk, servers, server, as_process)
        if pool is None:
            await servers.close()
    return walk


def raised(error: BaseException) -> str:
    """The error and where it was raised (the last frames), for the seed's report."""
    frames = traceback.extract_tb(error.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
    return f"{error!r} at {where}"


async def _walk_and_check(walk: Walk, moves: int) -> None:
    from tests.faults.invariants import settle_and_check

    await walk.run(moves)
    await settle_and_check(walk)


async def _close(walk: Walk, pool: ServerPool, server: WalkServer, as_process: bool) -> None:
    """Drop the agents; hand the server back (kept only if the walk was clean)."""
    try:
        async with asyncio.timeout(STOP_LIMIT):
            for agent in walk.agents:
                await agent.drop()
            await pool.give_back(server, as_process, walk.timers, clean=not walk.violations)
    except TimeoutError:
        walk.violations.append(f"stopping the agents and server hung (> {STOP_LIMIT:g} s)")
    except Exception as error:
        walk.violations.append(f"stopping the agents and server raised {raised(error)}")
