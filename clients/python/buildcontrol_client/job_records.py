"""The agent's running jobs, on disk in its work dir, and what a restart does with them.

A job's record (WORK_DIR/.running/JOB_ID.json: build, job, cgroup, process groups) is
written before its first step starts and removed just before its result is queued, once
its processes are gone. An agent that died without cleaning up (SIGKILL, the OOM killer,
a crash) and starts again on the same work dir finds the records of the jobs it was
running, kills what is left of them and reports each as stopped (KILLED, "agent
restarted") in the first Hello, before it takes new work.

Finding the leftovers: the job's cgroup when it had one (`cgroup.kill` catches
everything); without one, the processes that carry the job's BUILDCONTROL_JOB_ID and
the members of the recorded process groups they are in. That is the one place the
agent reads every process in /proc, once at start, never on a stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from buildcontrol_client.job_cgroup import JobCgroup
from buildcontrol_client.job_workspace import safe_file_name
from buildcontrol_client.process_exit import wait_for_any_exit
from buildcontrol_client.process_tree import is_zombie, job_marker, state_group_session

log = logging.getLogger("buildcontrol.agent")

RECORDS_DIR = ".running"
RESTART_REASON = "agent restarted"
# How long a restarting agent waits for its old jobs' processes to die after SIGKILL.
LEFTOVER_KILL_SECONDS = 10.0


@dataclass
class JobRecord:
    build_id: str
    job_id: str
    # The job's cgroup directory, if it had one.
    cgroup: str | None = None
    # Process groups of the steps started so far.
    pgids: list[int] = field(default_factory=list)


class RunningJobRecords:
    """One file per running job; a no-op without a work dir."""

    def __init__(self, work_dir: Path | None) -> None:
        self._dir = None if work_dir is None else work_dir / RECORDS_DIR

    def write(self, record: JobRecord) -> None:
        if self._dir is None:
            return
        path = self._path(record.job_id)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(asdict(record)))
            temporary.replace(path)  # a reader sees the old record or the new, never half
        except OSError as error:
            log.warning("job %s: cannot record it in %s: %s", record.job_id, path, error)

    def remove(self, job_id: str) -> None:
        if self._dir is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path(job_id).unlink()

    def read_all(self) -> list[JobRecord]:
        if self._dir is None or not self._dir.is_dir():
            return []
        records = []
        for path in sorted(self._dir.glob("*.json")):
            try:
                records.append(JobRecord(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as error:
                log.warning("ignoring unreadable job record %s: %s", path, error)
                path.unlink(missing_ok=True)
        return records

    def _path(self, job_id: str) -> Path:
        assert self._dir is not None
        return self._dir / f"{safe_file_name(job_id)}.json"


async def kill_leftovers(records: list[JobRecord]) -> None:
    """Kill every process the recorded jobs left; return once they are gone (bounded)."""
    pids = _kill_all(records)
    deadline = time.monotonic() + LEFTOVER_KILL_SECONDS
    while pids := {pid for pid in pids if _alive(pid)}:
        if time.monotonic() >= deadline:
            log.warning("processes %s of earlier jobs survive SIGKILL", sorted(pids))
            break
        await wait_for_any_exit(pids, deadline - time.monotonic())
    _remove_cgroups(records)


def _kill_all(records: list[JobRecord]) -> set[int]:
    """SIGKILL what the jobs left; the pids that may still be dying."""
    pids: set[int] = set()
    uncontained = []
    for record in records:
        if record.cgroup is not None and Path(record.cgroup).is_dir():
            cgroup = JobCgroup(Path(record.cgroup))
            cgroup.kill()
            pids.update(cgroup.members())
        else:
            uncontained.append(record)
    if uncontained:
        pids.update(_marked_leftovers(uncontained))
    return pids


def _remove_cgroups(records: list[JobRecord]) -> None:
    for record in records:
        if record.cgroup is not None:
            JobCgroup(Path(record.cgroup)).remove()


def _marked_leftovers(records: list[JobRecord]) -> set[int]:
    """SIGKILL the processes of jobs that had no cgroup (one pass over /proc)."""
    wanted = {record.job_id for record in records}
    groups = {pgid for record in records for pgid in record.pgids}
    marked: set[int] = set()
    grouped: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        info = state_group_session(pid)
        if info is None or is_zombie(info[0]):
            continue
        if job_marker(pid) in wanted:
            marked.add(pid)
        for group in {info[1], info[2]} & groups:
            grouped.setdefault(group, []).append(pid)
    # A recorded group counts only if one of its processes carries a job's marker: a
    # group id may have been reused by an unrelated process since the agent died.
    doomed = set(marked)
    for members in grouped.values():
        if marked.intersection(members):
            doomed.update(members)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return doomed


def _alive(pid: int) -> bool:
    info = state_group_session(pid)
    return info is not None and not is_zombie(info[0])
