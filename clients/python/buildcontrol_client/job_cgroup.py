"""Each job in a cgroup (v2) of its own: its processes are exactly the cgroup's.

A process cannot leave its cgroup by itself (setsid, double fork, a new process group:
all stay in), so `cgroup.procs` lists every process of the job in O(its processes) and
`cgroup.kill` (Linux >= 5.14) kills all of them in one write, including processes that
fork while the kill runs. The agent makes one cgroup per agent under a root it may
write (`--cgroup-root`, else the cgroup the agent itself runs in) and one per job
beneath it:

    ROOT/buildcontrol-AGENT_ID/job-JOB_ID/

Steps enter their job's cgroup before anything of theirs runs: the step's launcher
(`sh`, the process the agent starts) writes its own pid to `cgroup.procs` and only then
execs the step, so there is no moment when a step's process runs outside.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from pathlib import Path

from buildcontrol_client.job_workspace import safe_file_name

log = logging.getLogger("buildcontrol.agent")

_MOUNTINFO = Path("/proc/self/mountinfo")
_OWN_CGROUP = Path("/proc/self/cgroup")


def cgroup2_mount(mountinfo: Path = _MOUNTINFO) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or
    /sys/fs/cgroup/unified on hybrid systems), or None."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        # "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER"
        before, _, after = line.partition(" - ")
        fields = before.split()
        if after.split()[:1] == ["cgroup2"] and len(fields) >= 5:
            return Path(fields[4])
    return None


def own_cgroup() -> Path | None:
    """The directory of the cgroup v2 this process runs in, or None."""
    mount = cgroup2_mount()
    if mount is None:
        return None
    try:
        lines = _OWN_CGROUP.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return mount / line[3:].lstrip("/")
    return None


class JobCgroup:
    """One job's cgroup: list, signal and kill its processes, remove it when empty."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.procs_file = path / "cgroup.procs"

    def members(self) -> list[int]:
        """Live processes of the job (exited ones leave the cgroup at once, zombies
        included)."""
        try:
            text = self.procs_file.read_text()
        except FileNotFoundError:
            return []
        return [int(pid) for pid in text.split()]

    def signal(self, sig: signal.Signals) -> None:
        for pid in self.members():
            # Gone since the read: exactly what we want.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill(self) -> None:
        """SIGKILL to every process of the cgroup; `cgroup.kill` where the kernel has it
        (atomic: a process forking meanwhile cannot slip out), else one pass of kill(2)
        (the caller waits and calls again while members are left)."""
        try:
            (self.path / "cgroup.kill").write_text("1")
        except FileNotFoundError:
            if self.path.is_dir():
                self.signal(signal.SIGKILL)

    def remove(self) -> None:
        """Remove the (empty) cgroup; one still holding a process stays, with a warning."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("cannot remove cgroup %s: %s", self.path, error.strerror)


def _can_enter(cgroup: JobCgroup) -> bool:
    """Whether a child of ours can move itself into `cgroup`, as a step's launcher does
    (tried once, at the agent's start, with a throwaway `sh`)."""
    try:
        probe = subprocess.run(
            ["sh", "-c", 'echo $$ > "$0"', str(cgroup.procs_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


class CgroupTree:
    """The agent's cgroup, with one child per running job."""

    def __init__(self, base: Path) -> None:
        self.base = base

    @classmethod
    def create(cls, root: Path | None, agent_id: str) -> CgroupTree | None:
        """The agent's cgroup under `root` (None: the agent's own cgroup), or None (with
        a log line saying why) when cgroups v2 cannot be used here."""
        where = root if root is not None else own_cgroup()
        if where is None:
            log.info("no cgroup v2 hierarchy: jobs run in process groups only")
            return None
        base = where / f"buildcontrol-{safe_file_name(agent_id)}"
        try:
            base.mkdir(exist_ok=True)
            probe = JobCgroup(base / "probe")
            probe.path.mkdir(exist_ok=True)
            entered = _can_enter(probe)
            probe.remove()
        except OSError as error:
            log.info(
                "cannot create cgroups under %s (%s): jobs run in process groups only",
                where,
                error.strerror,
            )
            return None
        if not entered:
            # E.g. a directory we may write but whose common ancestor with ours we may
            # not (cgroup v2 delegation rules): a step could not enter its cgroup.
            log.info("cannot move processes into cgroups under %s: process groups only", where)
            return None
        if not (base / "cgroup.kill").exists():
            log.info("no cgroup.kill (Linux < 5.14): killing cgroup members one by one")
        log.info("each job runs in its own cgroup under %s", base)
        return cls(base)

    def remove(self) -> None:
        """Remove the agent's cgroup once no job is left in it (at the agent's exit)."""
        JobCgroup(self.base).remove()

    def job(self, job_id: str) -> JobCgroup:
        """The job's cgroup, created empty (or taken over, after a restart)."""
        cgroup = JobCgroup(self.base / f"job-{safe_file_name(job_id)}")
        cgroup.path.mkdir(exist_ok=True)
        return cgroup
