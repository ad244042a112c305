"""One step's process (`bash -c COMMAND` in a new process group, inside its job's
cgroup when it has one) and stopping all of a job's processes.

Stopping follows the cancel contract: SIGTERM to every process of the job, wait up to
the grace period for all of them to be gone, then SIGKILL. GRACEFUL means nothing was
left when the grace ended; KILLED means SIGKILL was needed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from buildcontrol_client.job_processes import JobProcesses
from buildcontrol_client.process_exit import wait_until_empty
from buildcontrol_client.process_tree import STEP_LEADERS
from buildcontrol_client.step_environment import StepUser
from buildcontrol_client.stop_signal import FirstSignal

log = logging.getLogger("buildcontrol.agent")

# After SIGKILL a process only lingers while stuck in the kernel (state D, e.g. on a dead
# NFS mount). We do not wait forever for those: the stop is reported as KILLED anyway.
KILL_WAIT_SECONDS = 10.0
# Without cgroup.kill a process may fork while being killed: kill again this often.
KILL_RETRY_SECONDS = 0.5


class StopOutcome(enum.Enum):
    GRACEFUL = "graceful"
    KILLED = "killed"


def exit_code_of(returncode: int) -> int:
    """asyncio reports death by signal N as -N; shells and the wire use 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class StepProcess:
    """A running step: `bash -c COMMAND` as the leader of its own process group."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        # start_new_session makes the child a session and group leader: pgid == pid.
        self.pgid = process.pid

    @classmethod
    async def start(
        cls,
        command: str,
        env: Mapping[str, str],
        cwd: Path | None = None,
        output: IO[bytes] | None = None,
        *,
        processes: JobProcesses | None = None,
        user: StepUser | None = None,
    ) -> StepProcess:
        """Start the step. `output` receives stdout and stderr; None discards them.
        With `processes` the step joins that job (its cgroup); with `user` it runs as
        that user (the agent must be root)."""
        argv = ["bash", "-c", command]
        identity: dict[str, object] = {}
        if user is not None and processes is not None and processes.cgroup is not None:
            # Entering the cgroup needs the agent's rights: drop them only after that.
            argv = user.setpriv(argv)
        elif user is not None:
            identity = {"user": user.uid, "group": user.gid, "extra_groups": []}
        if processes is not None:
            argv = processes.launcher(argv)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=output if output is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            # Its own group, so one killpg reaches everything the step starts.
            start_new_session=True,
            **identity,  # type: ignore[arg-type]
        )
        STEP_LEADERS.add(process.pid)
        if processes is not None:
            processes.add_leader(process.pid)
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait(self) -> int:
        """The leader's exit code (128 + N when killed by signal N)."""
        try:
            return exit_code_of(await self._process.wait())
        finally:
            if self._process.returncode is not None:
                STEP_LEADERS.discard(self._process.pid)


class JobTerminator:
    """Stops all of a job's processes with a grace period that a later, stricter stop
    may shorten. `signalled_at` and `gone_at` (time.monotonic()) say when the first
    signal went out and when the last process was seen gone."""

    def __init__(
        self, processes: JobProcesses, grace_seconds: float, first: FirstSignal | None = None
    ) -> None:
        self._processes = processes
        # A signal the stop already sent when its message arrived (stop_signal.py):
        # the grace counts from it.
        self._first = first or FirstSignal()
        start = self._first.at if self._first.sent else time.monotonic()
        self._kill_at = start + max(0.0, grace_seconds)
        self._rescheduled = asyncio.Event()
        self.signalled_at = math.nan
        self.gone_at = math.nan

    def hurry(self, grace_seconds: float) -> None:
        """A later stop (e.g. a forced cancel) asks for a shorter grace: kill sooner."""
        kill_at = time.monotonic() + max(0.0, grace_seconds)
        if kill_at < self._kill_at:
            self._kill_at = kill_at
            self._rescheduled.set()

    async def run(self) -> StopOutcome:
        if self._first.sent:
            return await self._after_first_signal()
        if not self._processes.members():
            return StopOutcome.GRACEFUL  # nothing left to stop: it ended by itself
        if self._kill_at > time.monotonic():
            self.signalled_at = time.monotonic()
            self._processes.signal(signal.SIGTERM)
            if await self._wait_for_grace():
                self.gone_at = time.monotonic()
                return StopOutcome.GRACEFUL
        if math.isnan(self.signalled_at):
            self.signalled_at = time.monotonic()
        await self._kill()
        return StopOutcome.KILLED

    async def _after_first_signal(self) -> StopOutcome:
        self.signalled_at = self._first.at
        if self._first.killed:
            # SIGKILL is out already: wait for it before sending it again.
            if await wait_until_empty(self._processes, time.monotonic() + KILL_RETRY_SECONDS):
                self.gone_at = time.monotonic()
                return StopOutcome.KILLED
        elif await self._wait_for_grace():
            self.gone_at = time.monotonic()
            return StopOutcome.GRACEFUL
        await self._kill()
        return StopOutcome.KILLED

    async def _kill(self) -> None:
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while True:
            # Again after each wake: without cgroup.kill, a process may fork meanwhile.
            self._processes.kill()
            retry = min(deadline, time.monotonic() + KILL_RETRY_SECONDS)
            if await wait_until_empty(self._processes, retry):
                self.gone_at = time.monotonic()
                return
            if time.monotonic() >= deadline:
                log.warning(
                    "processes %s survive SIGKILL (stuck in the kernel?)", self._processes.members()
                )
                return

    async def _wait_for_grace(self) -> bool:
        """True if the job's processes were gone before the (possibly shortened) grace
        ended."""
        while True:
            self._rescheduled.clear()
            if await wait_until_empty(self._processes, self._kill_at, self._rescheduled):
                return True
            if time.monotonic() >= self._kill_at:
                return False
