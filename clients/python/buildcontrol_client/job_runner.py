"""One assigned job on the agent: its steps in order, its stop, and its cleanup steps.

Everything the job has to say goes out through `emit` as ConnectRequest messages, in
order: JobAccepted, StepStarted/StepFinished per step, then exactly one result,
JobFinished (it ended by itself) or JobStopped (a StopJob ended it).

A stop from the server (docs/agent-protocol.md, "Stops and cleanup"):
1. SIGTERM to every process of the job (its cgroup, or its steps' process groups:
   job_processes.py), SIGKILL after the grace period; no further ordinary step starts.
2. The job's cleanup steps (`run_on_cancel`) that have not run yet run in order, each
   reported with StepStarted/StepFinished, all of them together bounded by the stop's
   cleanup timeout; past it everything left of the job gets SIGKILL.
3. JobStopped with how step 1 ended (GRACEFUL or KILLED).
A forced stop (`skip_cleanup`), also one arriving during step 1 or 2, kills whatever runs
at once, runs no cleanup and reports KILLED: the job was not given its grace.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import time
from pathlib import Path

from buildcontrol_proto.v1 import agent_pb2

from buildcontrol_client.job_records import JobRecord
from buildcontrol_client.job_reports import Emit, JobReports
from buildcontrol_client.job_runtime import JobRuntime
from buildcontrol_client.job_stop import StopRequest
from buildcontrol_client.job_workspace import JobWorkspace
from buildcontrol_client.log_uploader import JobLog
from buildcontrol_client.process_runner import JobTerminator, StepProcess, StopOutcome
from buildcontrol_client.step_environment import step_environment
from buildcontrol_client.stop_signal import FirstSignal

log = logging.getLogger("buildcontrol.agent")

# Exit status reported when a step could not even be started (as bash does for a
# missing command), and when the agent itself failed while running the job.
CANNOT_START_EXIT_CODE = 127
AGENT_ERROR_EXIT_CODE = 255
# Exit status of a job the agent interrupted for its own shutdown with no step running.
TERMINATED_EXIT_CODE = 128 + 15
# How long to wait for the leader's exit status once its group is gone or killed.
EXIT_STATUS_WAIT_SECONDS = 5.0
# Cleanup budget for a StopJob that carries no cleanup_timeout at all (the server's own
# default); an explicit zero means "no time for cleanup".
DEFAULT_CLEANUP_SECONDS = 60.0
# Longest a stopped job's log tail waits for the server to acknowledge the agent's
# results (an older server never does; a stream that is down does not until it is back).
TAIL_AFTER_RESULT_SECONDS = 0.5
# And then this long: the acknowledgements leave with the CANCELED commits, before the
# server has answered the callers; 50 tails sent at once right then still took the CPU
# of those answers (50 builds: all reported CANCELED 62-86 ms after the call, with this
# 41-50 ms). A follower of the log waits for it either way.
TAIL_AFTER_STORED_SECONDS = 0.1


class JobRun:
    """Runs one AssignJob. `start()` once; `request_stop()` any number of times."""

    def __init__(
        self,
        assignment: agent_pb2.AssignJob,
        emit: Emit,
        agent_id: str,
        work_dir: Path | None = None,
        runtime: JobRuntime | None = None,
    ) -> None:
        self.build_id = assignment.build_id
        self.job_id = assignment.job_id
        self._assignment = assignment
        self._reports = JobReports(assignment.build_id, assignment.job_id, emit)
        self._agent_id = agent_id
        self._runtime = runtime or JobRuntime()
        user = self._runtime.step_user
        self._workspace = JobWorkspace(
            work_dir, self.job_id, owner=None if user is None else (user.uid, user.gid)
        )
        self._processes = self._runtime.host.for_job(self.job_id)
        # The steps' output: kept (bounded) in the work dir and uploaded apart from
        # the agent stream (log_uploader.py).
        self.log = JobLog(assignment, work_dir, self._runtime.uplink)
        self._stop: StopRequest | None = None
        self._stop_requested = asyncio.Event()
        # When the first StopJob arrived (time.monotonic()), for the stop's timing line.
        self._stop_received_at = math.nan
        self._terminator: JobTerminator | None = None
        self._first_signal = FirstSignal()
        # Indexes of the steps started so far: a cleanup step that already ran as an
        # ordinary step is not run again after a stop.
        self._started: set[int] = set()
        # When the running cleanup step gets SIGKILL (time.monotonic()); a later stop
        # (forced, or the agent's shutdown) brings it forward and sets `_hurry`.
        self._cleanup_deadline = math.inf
        self._hurry = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self._stop is not None

    def start(self) -> asyncio.Task[None]:
        self._record()
        self._reports.accepted()
        log.info(
            "job %s (build %s) started: %d steps%s",
            self.job_id,
            self.build_id,
            len(self._assignment.steps),
            f", {self._assignment.name!r}" if self._assignment.name else "",
        )
        self._task = asyncio.create_task(self._run(), name=f"job-{self.job_id}")
        return self._task

    def request_stop(
        self,
        grace_seconds: float,
        by_server: bool = True,
        *,
        skip_cleanup: bool = False,
        cleanup_seconds: float = DEFAULT_CLEANUP_SECONDS,
    ) -> bool:
        """Begin stopping; False if a stop was already under way. A repeated stop changes
        nothing (delivery is at-least-once), except that it may make the stop stricter:
        a shorter grace brings the SIGKILL forward, `skip_cleanup` kills at once and
        cancels the cleanup, and a stop by the agent itself bounds the cleanup by its
        grace."""
        if skip_cleanup:
            grace_seconds = 0.0
        stop = self._stop
        if stop is None:
            self._stop_received_at = time.monotonic()
            self._stop = StopRequest(
                grace_seconds,
                by_server,
                cleanup_seconds,
                forced=skip_cleanup,
                agent_leaving=not by_server,
            )
            self._stop_requested.set()
            # Now, not when the job's task wakes: see stop_signal.py.
            self._first_signal.send(self._processes, grace_seconds)
            return True
        stop.by_server = stop.by_server or by_server
        stop.forced = stop.forced or skip_cleanup
        stop.agent_leaving = stop.agent_leaving or not by_server
        if self._terminator is not None:
            self._terminator.hurry(grace_seconds)
        else:
            stop.grace_seconds = min(stop.grace_seconds, grace_seconds)
        if skip_cleanup or not by_server:
            self._cleanup_deadline = min(self._cleanup_deadline, time.monotonic() + grace_seconds)
            self._hurry.set()
        return False

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            await self._run_steps()
        except Exception:
            # A bug in the agent must not leave the server waiting for a result forever.
            log.exception("job %s: the agent failed while running it", self.job_id)
            await JobTerminator(self._processes, 0).run()
            await self.log.finish()
            self._finish(succeeded=False, exit_code=AGENT_ERROR_EXIT_CODE)

    async def _run_steps(self) -> None:
        exit_code = 0
        running: StepProcess | None = None
        for step in self._assignment.steps:
            if self._stop is None:
                await self.log.previous_step_read()  # steps' output never interleaves
            if self._stop is not None:
                break
            process = await self._start_step(step)
            if process is None:
                exit_code = CANNOT_START_EXIT_CODE
                self._reports.step_finished(step.index, exit_code)
                break
            step_exit = await self._wait_for_exit_or_stop(process)
            if self._stop is not None:
                # Stopped while the step ran (even if it ended in the same instant: the
                # stop came first in the agent's order, so the job counts as stopped).
                running = process
                break
            assert step_exit is not None
            exit_code = step_exit
            self._reports.step_finished(step.index, exit_code)
            if exit_code != 0:
                break
        if self._stop is not None:
            await self._finish_stopped(self._stop, running)
        else:
            await self._kill_leftovers()
            await self.log.finish()
            self._finish(succeeded=exit_code == 0, exit_code=exit_code)

    async def _start_step(self, step: agent_pb2.AssignedStep) -> StepProcess | None:
        self._started.add(step.index)
        self._reports.step_started(step.index)
        env = step_environment(
            os.environ,
            self._assignment.env,
            agent_id=self._agent_id,
            build_id=self.build_id,
            job_id=self.job_id,
            step_index=step.index,
            user=self._runtime.step_user,
            # The job's own credential (reads its build, ends with the job): steps
            # call the server with this, never with the agent's token.
            job_token=self._assignment.job_token,
        )
        output = self.log.step_pipe(step.index, step.name or step.command)
        try:
            process = await StepProcess.start(
                step.command,
                env,
                self._workspace.directory(),
                output,
                processes=self._processes,
                user=self._runtime.step_user,
            )
        except (OSError, ValueError) as error:
            log.error("job %s: step %d could not start: %s", self.job_id, step.index, error)
            return None
        finally:
            output.close()  # the child holds its own copy of the descriptor
        self._record()
        return process

    async def _wait_for_exit_or_stop(self, process: StepProcess) -> int | None:
        """The step's exit code, or None when a stop came first."""
        exited = asyncio.ensure_future(process.wait())
        stopped = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not exited.done():
                exited.cancel()  # the stop path waits for the exit status itself
        return exited.result() if exited.done() and not exited.cancelled() else None

    async def _finish_stopped(self, stop: StopRequest, running: StepProcess | None) -> None:
        self._terminator = JobTerminator(self._processes, stop.grace_seconds, self._first_signal)
        outcome = await self._terminator.run()
        exit_code = await self._exit_status(running)
        self.log.stopped(outcome, self._terminator, self._stop_received_at)
        if not stop.by_server:
            await self.log.finish()
            self._finish(succeeded=False, exit_code=exit_code or TERMINATED_EXIT_CODE)
            return
        started = len(self._started)
        if stop.runs_cleanup:
            await self._run_cleanup(stop)
        if len(self._started) > started:
            # The terminator saw the job empty; only a cleanup step may have left some.
            await self._kill_leftovers()
        if stop.forced:
            # Checked last: a forced stop may arrive during the grace or the cleanup.
            outcome = StopOutcome.KILLED
        log.info(
            "job %s (build %s) stopped: %s (exit %s)",
            self.job_id,
            self.build_id,
            outcome.value,
            "none" if exit_code is None else exit_code,
        )
        # The result leaves as soon as the processes are gone (and the cleanup ran);
        # the log's last bytes follow once the server stored the agent's results (it
        # takes them for a while after the job's end, and a follower waits for them).
        # In a mass cancel, 50 tails uploaded beside the 50 results cost the server
        # the CPU that the CANCELED commits wait for.
        self._reports.stopped(outcome, exit_code)
        self._log_stop_timing(self._terminator)
        if self._runtime.results is not None:
            await self._runtime.results.all_stored(TAIL_AFTER_RESULT_SECONDS)
            await asyncio.sleep(TAIL_AFTER_STORED_SECONDS)
        await self.log.finish()
        self._forget()

    async def _exit_status(self, process: StepProcess | None) -> int | None:
        """The exit code of a step whose group was stopped (None if no step ran)."""
        if process is None:
            return None
        try:
            return await asyncio.wait_for(process.wait(), EXIT_STATUS_WAIT_SECONDS)
        except TimeoutError:
            log.warning("job %s: no exit status from pid %d", self.job_id, process.pid)
            return None

    async def _run_cleanup(self, stop: StopRequest) -> None:
        """Run the cleanup steps that have not run yet, in order, within the budget."""
        steps = [
            step
            for step in self._assignment.steps
            if step.run_on_cancel and step.index not in self._started
        ]
        if not steps:
            return
        budget = max(0.0, stop.cleanup_seconds)
        self._cleanup_deadline = min(self._cleanup_deadline, time.monotonic() + budget)
        log.info("job %s: %d cleanup steps, at most %gs", self.job_id, len(steps), budget)
        for step in steps:
            await self.log.previous_step_read()
            if not stop.runs_cleanup or time.monotonic() >= self._cleanup_deadline:
                # Forced, the agent is leaving, or the budget is spent.
                log.info("job %s: cleanup cut short before step %d", self.job_id, step.index)
                return
            process = await self._start_step(step)
            if process is None:
                self._reports.step_finished(step.index, CANNOT_START_EXIT_CODE)
                continue  # cleanup is a `finally`: a failed step does not stop the next
            self._reports.step_finished(step.index, await self._wait_for_cleanup_step(process))

    async def _wait_for_cleanup_step(self, process: StepProcess) -> int:
        """The cleanup step's exit code; past the cleanup deadline its group is killed
        (the deadline may move forward while we wait: a forced stop sets `_hurry`)."""
        exited = asyncio.ensure_future(process.wait())
        while not exited.done():
            remaining = self._cleanup_deadline - time.monotonic()
            if remaining <= 0:
                break
            self._hurry.clear()
            hurried = asyncio.ensure_future(self._hurry.wait())
            try:
                await asyncio.wait(
                    {exited, hurried}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                hurried.cancel()
        if not exited.done():
            log.warning(
                "job %s: cleanup step ran past its deadline (or the stop was forced): killed",
                self.job_id,
            )
            await JobTerminator(self._processes, 0).run()
            await asyncio.wait({exited}, timeout=EXIT_STATUS_WAIT_SECONDS)
        if not exited.done():
            exited.cancel()
            return 128 + signal.SIGKILL  # it was sent; the status itself never came
        return exited.result()

    async def _kill_leftovers(self) -> None:
        """Kill what the steps left in the background, as CI runners do at a job's end."""
        leftovers = self._processes.members()
        if leftovers:
            log.info("job %s: killing %d leftover processes", self.job_id, len(leftovers))
            await JobTerminator(self._processes, 0).run()

    def _record(self) -> None:
        """Keep the job on disk while it may have processes (job_records.py)."""
        cgroup = self._processes.cgroup
        self._runtime.records.write(
            JobRecord(
                self.build_id,
                self.job_id,
                None if cgroup is None else str(cgroup.path),
                sorted(self._processes.groups.pgids),
            )
        )

    def _forget(self) -> None:
        """The job's processes are gone and its result is queued. (An agent that dies
        just before this reports the job again on restart: the server ignores a second
        result for a job that already ended.)"""
        self._processes.close()
        self._runtime.records.remove(self.job_id)

    def _log_stop_timing(self, terminator: JobTerminator) -> None:
        """The agent's share of a stop, in time.monotonic() seconds (one clock for the
        whole machine, so a benchmark can put it next to its own timestamps)."""
        log.info(
            "job %s stop timing: received=%.6f signalled=%.6f gone=%.6f reported=%.6f",
            self.job_id,
            self._stop_received_at,
            terminator.signalled_at,
            terminator.gone_at,
            time.monotonic(),
        )

    def _finish(self, succeeded: bool, exit_code: int) -> None:
        log.info(
            "job %s (build %s) finished: %s (exit %d)",
            self.job_id,
            self.build_id,
            "succeeded" if succeeded else "failed",
            exit_code,
        )
        self._reports.finished(succeeded, exit_code)
        self._forget()
