"""Process groups: signal all of a step's processes and wait until none is left.

A step's `bash -c` is the leader of its own group; everything it starts (`sleep 600 &`,
a test server, a compiler's children) stays in that group unless it calls setsid. The
leader exiting therefore proves nothing: the group is gone only when no member is left.

Two traps handled here:
- Killed orphans are reparented to PID 1, which in containers is often not a real init
  and reaps late or never. A zombie is still a group member for kill(2), so
  `killpg(pgid, 0)` keeps succeeding; members are therefore read from /proc and zombies
  are not counted.
- There is no kernel event for "group became empty". We wait on pidfds of the members we
  see (an event per process exit) and look again after each exit, since members can fork
  while we wait. Where pidfds or /proc are missing we fall back to short polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Collection
from typing import Any

_PROC = "/proc"
_POLL_SECONDS = 0.02
_HAS_PROC = os.path.isdir(f"{_PROC}/self")


def _pidfds_work() -> bool:
    """pidfd_open exists on Linux >= 5.3 only; older kernels answer ENOSYS."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


_CAN_WAIT_ON_PIDS = _HAS_PROC and _pidfds_work()


def signal_groups(pgids: Collection[int], sig: signal.Signals) -> None:
    """Send `sig` to every process of each group; groups already gone are skipped."""
    for pgid in pgids:
        # An empty group raises ProcessLookupError: it is exactly the state we want.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)


def live_members(pgids: Collection[int]) -> list[int]:
    """Pids of the groups' processes that have not exited (zombies do not count).

    Without /proc, a group known to the kernel is reported as its leader's pid only.
    """
    existing = [pgid for pgid in pgids if _group_exists(pgid)]
    if not existing:
        return []
    if not _HAS_PROC:
        return existing
    wanted = set(existing)
    members: list[int] = []
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        state_and_group = _state_and_group(int(entry.name))
        if state_and_group is None:
            continue
        state, group = state_and_group
        if group in wanted and state not in ("Z", "X", "x"):
            members.append(int(entry.name))
    return members


async def wait_until_empty(
    pgids: Collection[int], deadline: float, wake: asyncio.Event | None = None
) -> bool:
    """True once no live member is left; False if the `deadline` (time.monotonic()) passed
    or `wake` was set first."""
    while True:
        members = live_members(pgids)
        if not members:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (wake is not None and wake.is_set()):
            return False
        await _wait_for_any_exit(members, pgids, remaining, wake)


async def _wait_for_any_exit(
    members: list[int], pgids: Collection[int], seconds: float, wake: asyncio.Event | None
) -> None:
    """Return when one of `members` exits, `wake` is set, or `seconds` pass."""
    loop = asyncio.get_running_loop()
    waiters: list[asyncio.Future[Any]] = []
    descriptors: list[int] = []
    try:
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        if _CAN_WAIT_ON_PIDS:
            exited: asyncio.Future[None] = loop.create_future()
            waiters.append(exited)
            for pid in members:
                try:
                    descriptor = os.pidfd_open(pid)
                except ProcessLookupError:
                    return  # exited between the scan and now: look again
                descriptors.append(descriptor)
                # The pid may have been reused by an unrelated process since the scan.
                if _group_of(pid) not in pgids:
                    return
                loop.add_reader(descriptor, _set_done, exited)
        else:
            seconds = min(seconds, _POLL_SECONDS)
        if waiters:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(seconds)
    finally:
        for descriptor in descriptors:
            loop.remove_reader(descriptor)
            os.close(descriptor)
        for waiter in waiters:
            waiter.cancel()


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member runs as another user (setuid): it exists all the same
    return True


def _group_of(pid: int) -> int | None:
    state_and_group = _state_and_group(pid)
    return None if state_and_group is None else state_and_group[1]


def _state_and_group(pid: int) -> tuple[str, int] | None:
    """(state, process group) from /proc/PID/stat, or None if the process is gone."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so the
    # fields are counted from the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 3:
        return None
    return fields[0], int(fields[2])
