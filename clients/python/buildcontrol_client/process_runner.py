"""One step's process (`bash -c COMMAND` in a new process group) and stopping groups.

Stopping follows the cancel contract: SIGTERM to every process of the groups, wait up to
the grace period for all of them to be gone, then SIGKILL. GRACEFUL means nothing was
left when the grace ended; KILLED means SIGKILL was needed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import subprocess
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import IO

from buildcontrol_client.process_group import live_members, signal_groups, wait_until_empty

log = logging.getLogger("buildcontrol.agent")

# After SIGKILL a process only lingers while stuck in the kernel (state D, e.g. on a dead
# NFS mount). We do not wait forever for those: the stop is reported as KILLED anyway.
KILL_WAIT_SECONDS = 10.0


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
    ) -> StepProcess:
        """Start the step. `output` receives stdout and stderr; None discards them."""
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            stdin=subprocess.DEVNULL,
            stdout=output if output is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            # Its own group, so one killpg reaches everything the step starts.
            start_new_session=True,
        )
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait(self) -> int:
        """The leader's exit code (128 + N when killed by signal N)."""
        return exit_code_of(await self._process.wait())


class GroupTerminator:
    """Stops process groups with a grace period that a later, stricter stop may shorten."""

    def __init__(self, pgids: Collection[int], grace_seconds: float) -> None:
        self._pgids = tuple(pgids)
        self._kill_at = time.monotonic() + max(0.0, grace_seconds)
        self._rescheduled = asyncio.Event()

    def hurry(self, grace_seconds: float) -> None:
        """A later stop (e.g. a forced cancel) asks for a shorter grace: kill sooner."""
        kill_at = time.monotonic() + max(0.0, grace_seconds)
        if kill_at < self._kill_at:
            self._kill_at = kill_at
            self._rescheduled.set()

    async def run(self) -> StopOutcome:
        if not live_members(self._pgids):
            return StopOutcome.GRACEFUL  # nothing left to stop: it ended by itself
        if self._kill_at > time.monotonic():
            signal_groups(self._pgids, signal.SIGTERM)
            if await self._wait_for_grace():
                return StopOutcome.GRACEFUL
        signal_groups(self._pgids, signal.SIGKILL)
        if not await wait_until_empty(self._pgids, time.monotonic() + KILL_WAIT_SECONDS):
            log.warning(
                "processes of groups %s survive SIGKILL (stuck in the kernel?)", self._pgids
            )
        return StopOutcome.KILLED

    async def _wait_for_grace(self) -> bool:
        """True if the groups emptied before the (possibly shortened) grace ended."""
        while True:
            self._rescheduled.clear()
            if await wait_until_empty(self._pgids, self._kill_at, self._rescheduled):
                return True
            if time.monotonic() >= self._kill_at:
                return False
