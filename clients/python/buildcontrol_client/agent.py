"""The reference build agent: holds one stream to the server, runs and stops jobs.

    agent = Agent("127.0.0.1:50051", "a1", {"os": "linux"}, capacity=2)
    await agent.run()          # until agent.request_shutdown()

Rules it keeps (docs/agent-protocol.md):
- Jobs outlive streams. When the stream drops, jobs keep running; the agent reconnects
  with capped, jittered exponential backoff and its Hello lists the jobs it runs and the
  results the server may have missed. The server answers with the desired state.
- Stops are at-least-once: a StopJob for an unknown, finished or already stopping job
  is a no-op, except that it may make the stop stricter: a shorter grace brings the
  SIGKILL forward, and `skip_cleanup` (a forced cancel) kills at once and skips or
  cuts short the job's cleanup steps (job_runner.py).
- Leaving on purpose (shutdown, or the server's Drain) ends with Goodbye; any other end
  of stream is a disconnect to the server.
- A job's processes never outlive the job: each job runs in a cgroup of its own when the
  agent may create one, else in process groups (job_processes.py). Running jobs are
  recorded in the work dir; an agent that starts where an earlier one died kills what
  those jobs left and reports them KILLED ("agent restarted") before it takes new work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import grpc
from buildcontrol_proto.v1 import agent_pb2, build_pb2

from buildcontrol_client.agent_refusals import Refusals
from buildcontrol_client.agent_stream import (
    AgentStream,
    AgentStreamError,
    StreamEnd,
    describe_error,
)
from buildcontrol_client.auth import auth_metadata
from buildcontrol_client.backoff import Backoff, BackoffPolicy
from buildcontrol_client.credentials import TlsOptions
from buildcontrol_client.job_cgroup import CgroupTree
from buildcontrol_client.job_processes import ProcessHost
from buildcontrol_client.job_records import RESTART_REASON, RunningJobRecords, kill_leftovers
from buildcontrol_client.job_runner import JobRun
from buildcontrol_client.job_runtime import JobRuntime
from buildcontrol_client.log_uploader import LogUplink
from buildcontrol_client.outbox import Outbox, ResultLog, is_result, job_id_of
from buildcontrol_client.process_privileges import become_child_subreaper
from buildcontrol_client.step_environment import StepUser
from buildcontrol_client.stop_messages import take_stops

log = logging.getLogger("buildcontrol.agent")
T = TypeVar("T")

# Messages about a job's progress; after a reconnect they are still worth sending for
# jobs that run on (a result, carried by Hello, says all there is about the others).
_PROGRESS_EVENTS = frozenset({"job_accepted", "step_started", "step_finished"})


def _installed_version() -> str:
    try:
        return metadata.version("buildcontrol")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


# Sent in every Hello: ListAgents shows which agents run which version.
AGENT_VERSION = _installed_version()


@dataclass(frozen=True)
class AgentOptions:
    """Tunables; the defaults suit production, tests shrink the times."""

    # Each job runs in WORK_DIR/<job id> with its output in WORK_DIR/<job id>.log;
    # None runs steps in the agent's directory and discards their output.
    work_dir: Path | None = None
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    # Grace between SIGTERM and SIGKILL for the agent's own jobs when it shuts down.
    shutdown_grace_seconds: float = 5.0
    # A server that accepts the connection but sends no Welcome is treated as down.
    welcome_timeout_seconds: float = 10.0
    # Time allowed for queued messages and Goodbye to go out before the stream is cut.
    goodbye_timeout_seconds: float = 5.0
    keepalive_seconds: float = 30.0
    # Used when Welcome carries no heartbeat interval.
    heartbeat_seconds: float = 10.0
    # An agent token (the server's DATA_DIR/agent.token on first start); None when the
    # server runs with --auth off.
    token: str | None = None
    # TLS to the server, with a client certificate if it requires one (mutual TLS).
    tls: TlsOptions | None = None
    # One cgroup (v2) per job, under `cgroup_root` (None: the agent's own cgroup), when
    # the agent may create them; else process groups only.
    use_cgroups: bool = False
    cgroup_root: Path | None = None
    # Without cgroups, become the child subreaper of the steps' orphans (the CLI does;
    # an agent embedded in another program leaves that process alone by default).
    subreaper: bool = False
    # Run steps as this user (the agent must be root); None: as the agent's user.
    step_user: StepUser | None = None
    # Another process's stream under this agent id is live (ALREADY_EXISTS): keep
    # trying this long, since a predecessor killed a moment ago may not be noticed by
    # the server yet, then exit refused (AgentRefused) instead of trying forever.
    id_taken_patience_seconds: float = 60.0


class Agent:
    def __init__(
        self,
        server: str,
        agent_id: str,
        labels: Mapping[str, str] | None = None,
        capacity: int = 1,
        *,
        options: AgentOptions | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.server = server
        self.agent_id = agent_id
        self.labels = dict(labels or {})
        self.capacity = capacity
        # This process's own id, sent in every Hello: the server lets a reconnect of
        # this process replace its old stream, and refuses another process's.
        self.instance_id = uuid.uuid4().hex
        self._options = options or AgentOptions()
        self._refusals = Refusals(self._options.id_taken_patience_seconds)
        self._jobs: dict[str, JobRun] = {}  # running (or stopping) jobs by job id
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._results = ResultLog()
        self._outbox = Outbox()
        self._shutdown = asyncio.Event()
        self._shutdown_reason = ""
        self._runtime = JobRuntime.plain(self._options.work_dir)

    @property
    def running_job_ids(self) -> list[str]:
        return list(self._jobs)

    async def wait_for_job(self, job_id: str) -> None:
        """Return once the job has ended and its result is queued (at once if the job is
        not running here)."""
        job = self._jobs.get(job_id)
        if job is not None:
            await job.wait()

    def request_shutdown(self, reason: str = "shutdown") -> None:
        """Stop own jobs, say Goodbye, and make `run()` return. Safe from a signal
        handler; a second request kills the jobs without waiting for their grace."""
        if self._shutdown.is_set():
            if self._jobs:
                log.info("shutdown requested again: killing jobs now")
            for job in self._jobs.values():
                job.request_stop(0, by_server=False)
            return
        log.info("shutting down (%s)", reason)
        self._shutdown_reason = reason
        self._shutdown.set()

    async def run(self) -> None:
        """Connect, serve, reconnect, until `request_shutdown()`; then stop own jobs."""
        backoff = Backoff(self._options.backoff)
        self._runtime = self._make_runtime()
        await self._recover()
        try:
            while not self._shutdown.is_set():
                why = await self._serve_one_stream(backoff)
                if self._shutdown.is_set():
                    break
                delay = backoff.next_delay()
                log.info("disconnected (%s); reconnecting in %.2fs", why, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._shutdown.wait(), delay)
        finally:
            await self._stop_all_jobs()
            if self._runtime.host.cgroups is not None:
                self._runtime.host.cgroups.remove()
            if self._runtime.uplink is not None:
                await self._runtime.uplink.close()
            if self._results.unsent():
                log.warning("exiting with %d job results never sent", self._results.unsent())
        log.info("agent %s stopped", self.agent_id)

    def _make_runtime(self) -> JobRuntime:
        options = self._options
        cgroups = (
            CgroupTree.create(options.cgroup_root, self.agent_id) if options.use_cgroups else None
        )
        subreaper = cgroups is None and options.subreaper and become_child_subreaper()
        return JobRuntime(
            ProcessHost(cgroups, subreaper=subreaper),
            options.step_user,
            RunningJobRecords(options.work_dir),
            LogUplink(self.server, options.tls),
            self._results,
        )

    async def _recover(self) -> None:
        """Kill what jobs of an agent that died here left, and queue their stops for the
        first Hello (job_records.py)."""
        records = self._runtime.records.read_all()
        if not records:
            return
        log.warning(
            "%d jobs of an earlier run of this agent were still running: killing them",
            len(records),
        )
        await kill_leftovers(records)
        for record in records:
            self._runtime.records.remove(record.job_id)
            log.info("job %s (build %s) killed: %s", record.job_id, record.build_id, RESTART_REASON)
            stopped = agent_pb2.JobStopped(
                build_id=record.build_id,
                job_id=record.job_id,
                outcome=build_pb2.JOB_OUTCOME_KILLED,
                reason=RESTART_REASON,
            )
            self._emit(agent_pb2.ConnectRequest(job_stopped=stopped))

    async def _serve_one_stream(self, backoff: Backoff) -> str:
        """One connection from Hello to its end; returns why it ended, for the log."""
        stream = AgentStream(
            self.server,
            self._outbox,
            on_message=self._on_server_message,
            on_written=self._results.mark_written,
            keepalive_seconds=self._options.keepalive_seconds,
            metadata=auth_metadata(self._options.token),
            tls=self._options.tls,
        )

        def make_hello() -> agent_pb2.Hello:
            hello = self._hello()
            self._prepare_hello(hello)
            return hello

        try:
            welcome = await self._until_shutdown(
                stream.open(make_hello, self._options.welcome_timeout_seconds)
            )
            if welcome is None:
                return "shutdown before the server answered"
            # The Welcome says nothing about the results the Hello carried: each is
            # forgotten only when a ReportsCommitted names it (_on_server_message).
            backoff.reset()
            self._refusals.connected()
            heartbeat = welcome.heartbeat_interval.ToTimedelta().total_seconds()
            stream.start(heartbeat if heartbeat > 0 else self._options.heartbeat_seconds)
            log.info(
                "connected to %s as %s (session %s, %d running jobs; server %s)",
                self.server,
                self.agent_id,
                welcome.session_id or "?",
                len(self._jobs),
                welcome.server_version or "?",
            )
            end = await stream.wait_end(self._shutdown)
            if end is StreamEnd.DRAINED:
                log.info("server drains (%s): leaving, will reconnect", stream.drain_reason)
                await stream.say_goodbye("drain", self._options.goodbye_timeout_seconds)
            elif end is StreamEnd.STOP_REQUESTED:
                # Stop jobs while the stream is up, so their results go out before Goodbye.
                await self._stop_all_jobs()
                await stream.say_goodbye(
                    self._shutdown_reason, self._options.goodbye_timeout_seconds
                )
            return end.value
        except TimeoutError:
            return f"no Welcome within {self._options.welcome_timeout_seconds:g}s"
        except (grpc.RpcError, AgentStreamError, asyncio.InvalidStateError) as error:
            self._refusals.check(error)  # raises AgentRefused when retrying cannot help
            return describe_error(error)
        except Exception as error:
            # A bug here must not take the jobs down with the agent: log it and reconnect.
            log.exception("agent stream failed unexpectedly")
            return f"unexpected {type(error).__name__}"
        finally:
            await stream.close()

    async def _until_shutdown(self, work: Coroutine[object, object, T]) -> T | None:
        """The result of `work`, or None if shutdown was requested first (`work` is then
        cancelled)."""
        task = asyncio.ensure_future(work)
        shutdown = asyncio.ensure_future(self._shutdown.wait())
        try:
            await asyncio.wait({task, shutdown}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            shutdown.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        return None if task.cancelled() else task.result()

    def _hello(self) -> agent_pb2.Hello:
        return agent_pb2.Hello(
            agent_version=AGENT_VERSION,
            agent_id=self.agent_id,
            instance_id=self.instance_id,
            labels=self.labels,
            capacity=self.capacity,
            features=[agent_pb2.AGENT_FEATURE_STOP_BATCHES],
            running_jobs=[
                agent_pb2.RunningJob(build_id=job.build_id, job_id=job.job_id)
                for job in self._jobs.values()
            ],
        )

    def _prepare_hello(self, hello: agent_pb2.Hello) -> list[str]:
        """Add unacknowledged results to `hello`; keep only queued progress of running jobs."""
        for message in self._outbox.take_all():
            event = message.WhichOneof("event")
            if event in _PROGRESS_EVENTS and job_id_of(message) in self._jobs:
                self._outbox.put(message)
        return self._results.fill_hello(hello)

    def _on_server_message(self, response: agent_pb2.ConnectResponse) -> None:
        event = response.WhichOneof("event")
        if event == "assign_job":
            self._assign(response.assign_job)
        elif event == "stop_job":
            take_stops(self._jobs, [response.stop_job])
        elif event == "stop_jobs":
            take_stops(self._jobs, response.stop_jobs.stops)
        elif event == "reports_committed":
            self._results.acknowledge(response.reports_committed.report_ids)
        else:
            log.warning("ignoring unexpected %s from the server", event)

    def _assign(self, assignment: agent_pb2.AssignJob) -> None:
        job_id = assignment.job_id
        if self._shutdown.is_set():
            log.info("job %s not started: the agent is shutting down", job_id)
            return
        if job_id in self._jobs or self._results.has(job_id):
            log.info("job %s assigned again: already taken, ignored", job_id)
            return
        if len(self._jobs) >= self.capacity:
            log.warning("job %s exceeds capacity %d; running it anyway", job_id, self.capacity)
        job = JobRun(assignment, self._emit, self.agent_id, self._options.work_dir, self._runtime)
        self._jobs[job_id] = job
        task = job.start()
        self._job_tasks.add(task)
        task.add_done_callback(self._job_tasks.discard)

    def _emit(self, message: agent_pb2.ConnectRequest) -> None:
        """Everything jobs say goes through here, in order."""
        if is_result(message):
            # In the same instant: the job leaves the running set and its result enters
            # the log, so a Hello always shows it in exactly one of the two.
            self._jobs.pop(job_id_of(message), None)
            self._results.add(message)
        self._outbox.put(message)

    async def _stop_all_jobs(self) -> None:
        for job in list(self._jobs.values()):
            job.request_stop(self._options.shutdown_grace_seconds, by_server=False)
        if self._job_tasks:
            await asyncio.wait(set(self._job_tasks))
