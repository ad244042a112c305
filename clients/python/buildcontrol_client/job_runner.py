"""One assigned job on the agent: its steps in order, and its stop.

Everything the job has to say goes out through `emit` as ConnectRequest messages, in
order: JobAccepted, StepStarted/StepFinished per step, then exactly one result,
JobFinished (it ended by itself) or JobStopped (a StopJob ended it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from buildcontrol.v1 import agent_pb2, build_pb2

from buildcontrol_client.process_group import live_members
from buildcontrol_client.process_runner import GroupTerminator, StepProcess, StopOutcome

log = logging.getLogger("buildcontrol.agent")

Emit = Callable[[agent_pb2.ConnectRequest], None]

# Exit status reported when a step could not even be started (as bash does for a
# missing command), and when the agent itself failed while running the job.
CANNOT_START_EXIT_CODE = 127
AGENT_ERROR_EXIT_CODE = 255
# Exit status of a job the agent interrupted for its own shutdown with no step running.
TERMINATED_EXIT_CODE = 128 + 15
# How long to wait for the leader's exit status once its group is gone or killed.
EXIT_STATUS_WAIT_SECONDS = 5.0

_OUTCOME_ON_WIRE = {
    StopOutcome.GRACEFUL: build_pb2.JOB_OUTCOME_GRACEFUL,
    StopOutcome.KILLED: build_pb2.JOB_OUTCOME_KILLED,
}


@dataclass
class _StopRequest:
    grace_seconds: float
    # A stop the server asked for is answered with JobStopped. One the agent started
    # for its own shutdown is a failure of the job from the server's point of view.
    by_server: bool


class JobRun:
    """Runs one AssignJob. `start()` once; `request_stop()` any number of times."""

    def __init__(
        self,
        assignment: agent_pb2.AssignJob,
        emit: Emit,
        agent_id: str,
        work_dir: Path | None = None,
    ) -> None:
        self.build_id = assignment.build_id
        self.job_id = assignment.job_id
        self._assignment = assignment
        self._emit = emit
        self._agent_id = agent_id
        self._work_dir = work_dir
        self._stop: _StopRequest | None = None
        self._stop_requested = asyncio.Event()
        self._terminator: GroupTerminator | None = None
        # Groups of this job's steps that may still have processes. Emptied groups are
        # dropped at once: their ids can be reused by unrelated processes later.
        self._groups: list[int] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self._stop is not None

    def start(self) -> asyncio.Task[None]:
        self._emit(
            agent_pb2.ConnectRequest(
                job_accepted=agent_pb2.JobAccepted(build_id=self.build_id, job_id=self.job_id)
            )
        )
        log.info(
            "job %s (build %s) started: %d steps%s",
            self.job_id,
            self.build_id,
            len(self._assignment.steps),
            f", {self._assignment.name!r}" if self._assignment.name else "",
        )
        self._task = asyncio.create_task(self._run(), name=f"job-{self.job_id}")
        return self._task

    def request_stop(self, grace_seconds: float, by_server: bool = True) -> bool:
        """Begin stopping; False if a stop was already under way (the request is a duplicate,
        though a shorter grace still brings the SIGKILL forward)."""
        if self._stop is None:
            self._stop = _StopRequest(grace_seconds, by_server)
            self._stop_requested.set()
            return True
        self._stop.by_server = self._stop.by_server or by_server
        if self._terminator is not None:
            self._terminator.hurry(grace_seconds)
        else:
            self._stop.grace_seconds = min(self._stop.grace_seconds, grace_seconds)
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
            await GroupTerminator(self._groups, 0).run()
            self._finish(succeeded=False, exit_code=AGENT_ERROR_EXIT_CODE)

    async def _run_steps(self) -> None:
        exit_code = 0
        running: StepProcess | None = None
        for step in self._assignment.steps:
            if self._stop is not None:
                break
            process = await self._start_step(step)
            if process is None:
                exit_code = CANNOT_START_EXIT_CODE
                self._emit_step_finished(step.index, exit_code)
                break
            step_exit = await self._wait_for_exit_or_stop(process)
            if self._stop is not None:
                # Stopped while the step ran (even if it ended in the same instant: the
                # stop came first in the agent's order, so the job counts as stopped).
                running = process
                break
            assert step_exit is not None
            exit_code = step_exit
            self._emit_step_finished(step.index, exit_code)
            self._groups = [pgid for pgid in self._groups if live_members([pgid])]
            if exit_code != 0:
                break
        if self._stop is not None:
            await self._finish_stopped(self._stop, running)
        else:
            await self._kill_leftovers()
            self._finish(succeeded=exit_code == 0, exit_code=exit_code)

    async def _start_step(self, step: agent_pb2.AssignedStep) -> StepProcess | None:
        self._emit(
            agent_pb2.ConnectRequest(
                step_started=agent_pb2.StepStarted(
                    build_id=self.build_id, job_id=self.job_id, step_index=step.index
                )
            )
        )
        env = {
            **os.environ,
            **self._assignment.env,
            "BUILDCONTROL_AGENT_ID": self._agent_id,
            "BUILDCONTROL_BUILD_ID": self.build_id,
            "BUILDCONTROL_JOB_ID": self.job_id,
            "BUILDCONTROL_STEP_INDEX": str(step.index),
        }
        output = self._open_log(step)
        try:
            process = await StepProcess.start(step.command, env, self._job_dir(), output)
        except (OSError, ValueError) as error:
            log.error("job %s: step %d could not start: %s", self.job_id, step.index, error)
            return None
        finally:
            if output is not None:
                output.close()  # the child holds its own copy of the descriptor
        self._groups.append(process.pgid)
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

    async def _finish_stopped(self, stop: _StopRequest, running: StepProcess | None) -> None:
        self._terminator = GroupTerminator(self._groups, stop.grace_seconds)
        outcome = await self._terminator.run()
        exit_code: int | None = None
        if running is not None:
            try:
                exit_code = await asyncio.wait_for(running.wait(), EXIT_STATUS_WAIT_SECONDS)
            except TimeoutError:
                log.warning("job %s: no exit status from pid %d", self.job_id, running.pid)
        if not stop.by_server:
            self._finish(succeeded=False, exit_code=exit_code or TERMINATED_EXIT_CODE)
            return
        log.info(
            "job %s (build %s) stopped: %s (exit %s)",
            self.job_id,
            self.build_id,
            outcome.value,
            "none" if exit_code is None else exit_code,
        )
        stopped = agent_pb2.JobStopped(
            build_id=self.build_id, job_id=self.job_id, outcome=_OUTCOME_ON_WIRE[outcome]
        )
        if exit_code is not None:
            stopped.exit_code = exit_code
        self._emit(agent_pb2.ConnectRequest(job_stopped=stopped))

    async def _kill_leftovers(self) -> None:
        """Kill what the steps left in the background, as CI runners do at a job's end."""
        leftovers = live_members(self._groups)
        if leftovers:
            log.info("job %s: killing %d leftover processes", self.job_id, len(leftovers))
            await GroupTerminator(self._groups, 0).run()

    def _finish(self, succeeded: bool, exit_code: int) -> None:
        log.info(
            "job %s (build %s) finished: %s (exit %d)",
            self.job_id,
            self.build_id,
            "succeeded" if succeeded else "failed",
            exit_code,
        )
        self._emit(
            agent_pb2.ConnectRequest(
                job_finished=agent_pb2.JobFinished(
                    build_id=self.build_id,
                    job_id=self.job_id,
                    succeeded=succeeded,
                    exit_code=exit_code,
                )
            )
        )

    def _emit_step_finished(self, index: int, exit_code: int) -> None:
        self._emit(
            agent_pb2.ConnectRequest(
                step_finished=agent_pb2.StepFinished(
                    build_id=self.build_id,
                    job_id=self.job_id,
                    step_index=index,
                    exit_code=exit_code,
                )
            )
        )

    def _job_dir(self) -> Path | None:
        if self._work_dir is None:
            return None
        job_dir = self._work_dir / _safe_file_name(self.job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        return job_dir

    def _open_log(self, step: agent_pb2.AssignedStep) -> IO[bytes] | None:
        """The job's log (one file per job, steps appended), or None to discard output."""
        if self._work_dir is None:
            return None
        path = self._work_dir / f"{_safe_file_name(self.job_id)}.log"
        try:
            self._work_dir.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as header:
                header.write(f"--- step {step.index}: {step.name or step.command}\n".encode())
            return path.open("ab")
        except OSError as error:
            # A full or read-only disk should not fail the build: run it without a log.
            log.warning("job %s: cannot write %s (%s); output discarded", self.job_id, path, error)
            return None


def _safe_file_name(text: str) -> str:
    """Job ids come from the server; never let one climb out of the work dir."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".") or "job"
