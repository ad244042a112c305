"""Where a job's processes live and how the agent finds, signals and kills all of them.

With a cgroup (job_cgroup.py) the job's processes are the cgroup's: nothing escapes,
`setsid` and double forks included. Without one they are its steps' process groups and
the agent's descendants (process_tree.py). Either way finding them costs O(the job's
own processes), never a scan of every process on the host: the stop path of one job
does not slow down with the number of jobs or processes on the machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path
from signal import Signals

from buildcontrol_client.job_cgroup import CgroupTree, JobCgroup
from buildcontrol_client.process_tree import (
    STEP_LEADERS,
    ProcessGroups,
    is_zombie,
    state_group_session,
)

log = logging.getLogger("buildcontrol.agent")

# Runs as the step's first process: enter the job's cgroup ($0), then become the step.
# A failed write means the step would run uncontained: it does not start (exit 127).
_ENTER_CGROUP = 'echo $$ > "$0" || exit 127; exec "$@"'


class JobProcesses:
    """All processes of one job: its cgroup when it has one, its process groups always
    (they give `killpg` and the groups recorded for a restart)."""

    def __init__(
        self, job_id: str, cgroup: JobCgroup | None = None, *, reap_adopted: bool = False
    ) -> None:
        self.cgroup = cgroup
        self.groups = ProcessGroups(job_id, reap_adopted=reap_adopted)

    def launcher(self, argv: list[str]) -> list[str]:
        """The command that starts `argv` inside the job's cgroup (as is without one)."""
        if self.cgroup is None:
            return argv
        return ["sh", "-c", _ENTER_CGROUP, str(self.cgroup.procs_file), *argv]

    def add_leader(self, pid: int) -> None:
        self.groups.add_leader(pid)

    def members(self) -> list[int]:
        """Live processes of the job (zombies do not count)."""
        if self.cgroup is not None:
            inside = self.cgroup.members()
            return inside + self._launchers_outside(inside)
        return self.groups.members()

    def signal(self, sig: signal.Signals) -> None:
        if self.cgroup is not None:
            # Who is outside first: a launcher that joins between the cgroup's signal
            # and a later look would be missed by both.
            outside = self._launchers_outside(self.cgroup.members())
            self.cgroup.signal(sig)
            self._signal_pids(outside, sig)
        else:
            self.groups.signal(sig)

    def kill(self) -> None:
        if self.cgroup is not None:
            outside = self._launchers_outside(self.cgroup.members())
            self.cgroup.kill()
            self._signal_pids(outside, signal.SIGKILL)
        else:
            self.groups.kill()

    def _launchers_outside(self, inside: list[int]) -> list[int]:
        """Steps started but not yet in the cgroup: a launcher joins it only when it has
        written itself into cgroup.procs, so a stop in that moment would find the cgroup
        empty and the step would start afterwards, outside every kill. Only leaders the
        agent has not reaped yet count: their pids cannot have been reused."""
        members = set(inside)
        outside = []
        for pid in self.groups.pgids:
            if pid in members or pid not in STEP_LEADERS:
                continue
            info = state_group_session(pid)
            if info is not None and not is_zombie(info[0]):
                outside.append(pid)
        return outside

    @staticmethod
    def _signal_pids(launchers: list[int], sig: Signals) -> None:
        for pid in launchers:
            # Before its exec the launcher has no children: its pid is all of the step.
            # One that joined the cgroup meanwhile is still this pid (not reaped yet).
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def close(self) -> None:
        """The job is over and its processes are gone: remove its cgroup."""
        if self.cgroup is not None:
            self.cgroup.remove()


class ProcessHost:
    """How this agent contains jobs: one cgroup per job when it may create them, else
    process groups (and, when the agent is a child subreaper, the orphans it adopts)."""

    def __init__(self, cgroups: CgroupTree | None = None, *, subreaper: bool = False) -> None:
        self.cgroups = cgroups
        self.subreaper = subreaper

    @property
    def cgroup_base(self) -> Path | None:
        return None if self.cgroups is None else self.cgroups.base

    def for_job(self, job_id: str) -> JobProcesses:
        cgroup = None
        if self.cgroups is not None:
            try:
                cgroup = self.cgroups.job(job_id)
            except OSError as error:
                # Still contained by its process groups: better than not running it.
                log.warning("job %s: no cgroup (%s): process groups only", job_id, error)
        return JobProcesses(job_id, cgroup, reap_adopted=self.subreaper)
