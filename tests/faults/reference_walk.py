"""A smaller walk with the reference agent: real agent processes (`buildcontrol
agent`), a real server process, real signals and real step processes: `sleep`, a trap
that ignores SIGTERM, a background child, a child that escapes with `setsid`.

Rules: submit, cancel (graceful or forced, random grace), SIGKILL an agent and start
it again with the same id and work dir, SIGKILL the server and restart it on the same
port, pause. After the walk every agent is up, every live build is cancelled, and:
every accepted cancel ended CANCELED within its deadline, every build is terminal, and
no step process of any job is left."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.faults import warm
from tests.faults.cancels import CancelWatch
from tests.faults.invariants import SLACK, TERMINAL, name
from tests.faults.servers import ProcessServer, Timers
from tests.support.processes import AgentProc, process_command, wait_gone
from tests.support.step_processes import marked_processes

TIMERS = Timers(stop_ack_timeout=1.5, reconnect_window=2.0, default_grace=0.5)
STEPS = {
    "sleep": "sleep 300",
    "ignores SIGTERM": "trap '' TERM; sleep 300",
    "background child": "sleep 300 & sleep 300; wait",
    "setsid escape": "setsid sleep 300 & sleep 300; wait",
    "quick": "true",
    "fails": "exit 3",
}
# Step processes of an ended job get this long to be gone (a SIGKILL, then reaping).
GONE_WITHIN = 5.0


@dataclass
class RealAgent:
    agent_id: str
    work: Path
    spares: warm.Spares
    proc: AgentProc | None = None

    async def start(self, target: str) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.proc = await warm.start_agent(
            self.spares,
            target,
            self.agent_id,
            self.work,
            "os=linux",
            "--work-dir",
            str(self.work / "jobs"),
        )

    async def kill(self) -> None:
        if self.proc is not None and self.proc.process.returncode is None:
            self.proc.process.kill()
            await self.proc.process.wait()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.process.returncode is None


@dataclass
class ReferenceWalk:
    seed: int
    server: ProcessServer
    rng: random.Random
    agents: list[RealAgent] = field(default_factory=list)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> build id
    builds: list[str] = field(default_factory=list)
    cancels: list[CancelWatch] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    started: float = 0.0

    def note(self, what: str) -> None:
        """A line of the trace, with the seconds since the run started."""
        loop = asyncio.get_running_loop()
        if not self.trace:
            self.started = loop.time()
        self.trace.append(f"{loop.time() - self.started:6.2f} {what}")

    async def submit(self) -> None:
        kind = self.rng.choice(list(STEPS))
        request = build_control_pb2.SubmitBuildRequest(
            pipeline="faults-reference",
            stages=[
                build_control_pb2.StageSpec(
                    name="s",
                    jobs=[
                        build_control_pb2.JobSpec(
                            name="j",
                            labels={"os": "linux"},
                            steps=[build_control_pb2.StepSpec(command=STEPS[kind])],
                        )
                    ],
                )
            ],
        )
        try:
            build = (await self.server.stub.SubmitBuild(request, timeout=10)).build
        except grpc.aio.AioRpcError as error:
            self.note(f"submit refused {error.code().name}")
            return
        self.builds.append(build.build_id)
        for stage in build.stages:
            for job in stage.jobs:
                self.jobs[job.job_id] = build.build_id
        self.note(f"submit {build.build_id}: {kind}")

    async def cancel(self) -> None:
        if self.builds:
            build_id = self.rng.choice(self.builds)
            force = self.rng.random() < 0.25
            grace = round(self.rng.uniform(0, 1.0), 2)
            watch = CancelWatch(build_id, force, grace, asyncio.get_running_loop().time())
            watch.start(self.server.stub, "faults reference walk")
            self.cancels.append(watch)
            self.note(f"{'force' if force else 'cancel'} {build_id} grace {grace}")

    async def kill_agent(self) -> None:
        agent = self.rng.choice(self.agents)
        if agent.alive:
            await agent.kill()
            self.note(f"{agent.agent_id} SIGKILL")
        else:
            await agent.start(self.server.target)
            self.note(f"{agent.agent_id} started again (same id, same work dir)")

    async def kill_server(self) -> None:
        for watch in self.cancels:
            if not watch.done:
                watch.cut_by_kill = True
        started = asyncio.get_running_loop().time()
        await self.server.kill_and_restart()
        self.server.down_seconds += asyncio.get_running_loop().time() - started
        self.note("server SIGKILL and restart")

    async def pause(self) -> None:
        # A random gap so steps start and timers fire between moves; nothing waits on it.
        await asyncio.sleep(round(self.rng.uniform(0.05, 0.5), 2))

    async def run(self, moves: int) -> None:
        rules = [
            (self.submit, 3),
            (self.cancel, 2),
            (self.kill_agent, 1.2),
            (self.kill_server, 0.4),
            (self.pause, 2),
        ]
        for _ in range(moves):
            await self.rng.choices([r for r, _ in rules], [w for _, w in rules])[0]()

    # ---- the end ----------------------------------------------------------------------

    def deadline(self, watch: CancelWatch) -> float:
        assert watch.accepted_at is not None
        return (
            watch.accepted_at
            + watch.grace
            + TIMERS.stop_ack_timeout
            + TIMERS.reconnect_window
            + self.server.down_seconds
            + SLACK
        )

    async def settle_and_check(self) -> None:
        for agent in self.agents:
            if not agent.alive:
                await agent.start(self.server.target)
        loop = asyncio.get_running_loop()
        accepted = [w for w in self.cancels if not w.done and not w.cut_by_kill]
        if accepted:
            limit = max(
                (self.deadline(w) for w in accepted if w.accepted_at is not None),
                default=loop.time() + SLACK,
            )
            await asyncio.wait(
                [w.task for w in accepted if w.task is not None],
                timeout=max(SLACK, limit - loop.time()),
            )
        for watch in self.cancels:
            self._check_cancel(watch)
        await self._cancel_the_rest()
        for build_id in self.builds:
            build = (
                await self.server.stub.GetBuild(
                    build_control_pb2.GetBuildRequest(build_id=build_id), timeout=10
                )
            ).build
            if build.status not in TERMINAL:
                self.violations.append(
                    f"{build_id}: stays {name(build_pb2.BuildStatus, build.status)}"
                )
        await self._check_no_process_left()

    def _check_cancel(self, watch: CancelWatch) -> None:
        if watch.cut_by_kill or watch.accepted_at is None:
            return
        if not watch.done:
            self.violations.append(f"{watch.build_id}: cancel ACCEPTED, never finished")
        elif watch.error is not None:
            self.violations.append(
                f"{watch.build_id}: cancel ACCEPTED, then {watch.error.name}: {watch.details}"
            )
        elif watch.final_status != build_pb2.BUILD_STATUS_CANCELED:
            self.violations.append(
                f"{watch.build_id}: cancel ACCEPTED, build ended"
                f" {name(build_pb2.BuildStatus, watch.final_status)}"
            )
        elif watch.finished_at is not None and watch.finished_at > self.deadline(watch):
            self.violations.append(f"{watch.build_id}: cancel finished after its deadline")

    async def _cancel_the_rest(self) -> None:
        settling = []
        for build_id in self.builds:
            watch = CancelWatch(build_id, False, 0.5, asyncio.get_running_loop().time())
            watch.start(self.server.stub, "faults reference walk: settle")
            settling.append(watch)
        tasks = [w.task for w in settling if w.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=SLACK + TIMERS.stop_ack_timeout + 0.5)
        for watch in settling:
            refused = watch.error == grpc.StatusCode.FAILED_PRECONDITION  # already finished
            if not refused:
                self._check_cancel(watch)
            await watch.stop_following()

    async def _check_no_process_left(self) -> None:
        """Every job is terminal now: none of its step processes may be alive. They get
        GONE_WITHIN together (a SIGKILL under way, a parent not yet reaped)."""
        found = {job_id: set(marked_processes(job_id)) for job_id in self.jobs}
        everything = set().union(*found.values()) if found else set()
        if not everything:
            return
        try:
            await wait_gone(everything, GONE_WITHIN)
        except (TimeoutError, AssertionError):
            for job_id, build_id in self.jobs.items():
                left = {pid: process_command(pid) for pid in marked_processes(job_id)}
                if left:
                    self.violations.append(
                        f"{build_id}/{job_id}: step processes left after the job ended: {left}"
                    )

    async def clean_up(self) -> None:
        for agent in self.agents:
            if agent.proc is not None and agent.proc.process.returncode is None:
                await agent.proc.stop()
        for watch in self.cancels:
            await watch.stop_following()
        await self.server.stop()
        # Whatever the agents left behind must not outlive the test.
        for job_id in self.jobs:
            for pid in marked_processes(job_id):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def run_reference_seed(seed: int, moves: int = 10) -> ReferenceWalk:
    rng = random.Random(seed)
    spares = warm.Spares(asyncio.subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="faults-ref-") as work:
        server = ProcessServer(Path(work) / "data", TIMERS)
        try:
            await server.start()
            walk = ReferenceWalk(seed, server, rng)
            walk.note(f"reference seed {seed}")
            walk.agents = [RealAgent(f"ref-{n}", Path(work) / f"ref-{n}", spares) for n in range(2)]
            try:
                for agent in walk.agents:
                    await agent.start(server.target)
                await walk.run(moves)
                await walk.settle_and_check()
            finally:
                await walk.clean_up()
        finally:
            await spares.close()
    return walk
