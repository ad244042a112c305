"""The first signal of a stop, sent in the same turn as the StopJob is read.

The job's own task (which waits for the processes to be gone, runs the cleanup and
reports) wakes a few event-loop passes after the message arrived, and in a burst of
stops those passes are shared with every other job's bookkeeping. Signalling from the
message handler itself means each job's processes get their signal the moment its
StopJob is read: fifty stops signal fifty jobs as fast as the stream delivers them,
and a slow or stubborn job never delays another's signal. The JobTerminator then
takes over (waits the grace, escalates to SIGKILL) knowing what was already sent.
"""

from __future__ import annotations

import math
import signal
import time

from buildcontrol_client.job_processes import JobProcesses


class FirstSignal:
    """What the stop sent before the job's task took over: `at` (time.monotonic(),
    NaN if nothing was sent) and whether it was already SIGKILL (grace 0)."""

    def __init__(self) -> None:
        self.at = math.nan
        self.killed = False

    @property
    def sent(self) -> bool:
        return not math.isnan(self.at)

    def send(self, processes: JobProcesses, grace_seconds: float) -> None:
        """SIGTERM to every process of the job, or SIGKILL (cgroup.kill) with no
        grace; nothing if no process of it runs (e.g. between two steps, where the
        terminator decides)."""
        if self.sent or not processes.members():
            return
        self.at = time.monotonic()
        if grace_seconds <= 0:
            processes.kill()
            self.killed = True
        else:
            processes.signal(signal.SIGTERM)
