"""Without cgroups: a job's processes are found from its steps, never by a scan of /proc.

Each step's `bash -c` leads its own process group; what it starts stays in that group
unless it calls setsid. The job's processes are therefore the live descendants of its
step leaders (read from /proc/PID/task/TID/children: O(the job's processes)), plus the
orphans the agent adopted as their child subreaper (PR_SET_CHILD_SUBREAPER): a direct
child of the agent that is not a step leader belongs to the job whose group, session or
BUILDCONTROL_JOB_ID it carries. Signals go to each group with one killpg and to every
process found that left its group.

An agent that is not a subreaper (one embedded in another program) loses orphans to
PID 1: for a group that still exists but whose members were not found that way it falls
back to reading /proc. What it cannot see at all: a process that left its group and
session *and* whose parent exited before the agent looked. With cgroups (job_cgroup.py)
nothing escapes.

Zombies are not counted: an exited process nobody reaped yet runs nothing, although
kill(2) still finds its group.
"""

from __future__ import annotations

import contextlib
import os
import signal

_PROC = "/proc"
_JOB_MARKER = b"BUILDCONTROL_JOB_ID="

# Step leaders started by this process (all jobs): asyncio waits for their exit status,
# so they are never reaped here, and never taken for another job's orphans.
STEP_LEADERS: set[int] = set()


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (of all its threads); [] once it is gone."""
    children: list[int] = []
    try:
        threads = os.listdir(f"{_PROC}/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return children
    for thread in threads:
        try:
            with open(f"{_PROC}/{pid}/task/{thread}/children", "rb") as listing:
                children.extend(int(child) for child in listing.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return children


def state_group_session(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, session) from /proc/PID/stat, or None if it is gone."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses,
    # so the fields are counted from the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 4:
        return None
    return fields[0], int(fields[2]), int(fields[3])


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member runs as another user: it exists all the same
    return True


def _scan_groups(pgids: set[int]) -> list[int]:
    """Live members of `pgids`, read from all of /proc: only for orphans an agent that
    is not a subreaper lost to PID 1."""
    if not pgids:
        return []
    members = []
    for entry in os.scandir(_PROC):
        if entry.name.isdigit():
            info = state_group_session(int(entry.name))
            if info is not None and info[1] in pgids and not is_zombie(info[0]):
                members.append(int(entry.name))
    return members


def is_zombie(state: str) -> bool:
    return state in ("Z", "X", "x")


def job_marker(pid: int) -> str | None:
    """The BUILDCONTROL_JOB_ID in a process's environment (None if unreadable)."""
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as environ:
            variables = environ.read().split(b"\0")
    except OSError:
        return None
    for variable in variables:
        if variable.startswith(_JOB_MARKER):
            return variable[len(_JOB_MARKER) :].decode("utf-8", "replace")
    return None


class ProcessGroups:
    """One job's processes without a cgroup: its steps' groups and their descendants."""

    def __init__(self, job_id: str | None = None, *, reap_adopted: bool = False) -> None:
        self._job_id = job_id
        # The agent is a subreaper: orphans of this job become its children, and it
        # must reap them (asyncio only reaps the step leaders it started).
        self._reap_adopted = reap_adopted
        self._leaders: list[int] = []
        self._pgids: set[int] = set()
        self._adopted: set[int] = set()

    @property
    def pgids(self) -> frozenset[int]:
        return frozenset(self._pgids)

    def add_leader(self, pid: int) -> None:
        """A step's process, leader of its own group and session."""
        self._leaders.append(pid)
        self._pgids.add(pid)

    def members(self) -> list[int]:
        """Live processes of the job: O(its processes + the agent's direct children)."""
        roots = [*self._leaders, *self._adopt_orphans()]
        found: list[int] = []
        groups_seen: set[int] = set()
        seen: set[int] = set()
        while roots:
            pid = roots.pop()
            if pid in seen:
                continue
            seen.add(pid)
            info = state_group_session(pid)
            if info is None:
                continue
            if not is_zombie(info[0]):
                found.append(pid)
                groups_seen.add(info[1])
            roots.extend(children_of(pid))
        self._leaders = [pid for pid in self._leaders if pid in seen]
        if not self._reap_adopted:
            unseen = {g for g in self._pgids - groups_seen if _group_exists(g)}
            found.extend(pid for pid in _scan_groups(unseen) if pid not in seen)
        return found

    def signal(self, sig: signal.Signals) -> None:
        for pgid in self._pgids:
            # An empty group raises ProcessLookupError: exactly the state we want.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
        for pid in self.members():
            info = state_group_session(pid)
            if info is not None and info[1] not in self._pgids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)  # left its group (setsid): reached one by one

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def remove(self) -> None:
        """Nothing to remove (cgroups have a directory; groups do not)."""

    def _adopt_orphans(self) -> list[int]:
        """This job's processes that were reparented to the agent (a subreaper)."""
        adopted: list[int] = []
        for child in children_of(os.getpid()):
            if child in STEP_LEADERS:
                continue
            info = state_group_session(child)
            if info is None:
                self._adopted.discard(child)
                continue
            state, group, session = info
            ours = child in self._adopted or group in self._pgids or session in self._pgids
            if not ours and self._job_id is not None and not is_zombie(state):
                ours = job_marker(child) == self._job_id
            if not ours:
                continue
            if is_zombie(state):
                self._reap(child)
                continue
            self._adopted.add(child)
            adopted.append(child)
        return adopted

    def _reap(self, pid: int) -> None:
        self._adopted.discard(pid)
        if self._reap_adopted:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
