"""Waiting for processes to exit, woken by the kernel (a pidfd per process), not by polls.

A job's processes are found by a `JobProcesses` scope (its cgroup, or its process groups
and the agent's own descendants: job_processes.py); this module only waits. There is no
kernel event for "the job has no process left", so we wait for any one of the members
we know to exit and ask the scope again: members may fork while we wait.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

# Where pidfds are missing (Linux < 5.3) we look again at this interval instead.
_POLL_SECONDS = 0.02


class Members(Protocol):
    def members(self) -> list[int]:
        """Pids of the scope's processes that have not exited (zombies do not count)."""
        ...


def _pidfds_work() -> bool:
    """pidfd_open exists on Linux >= 5.3 only; older kernels answer ENOSYS."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


CAN_WAIT_ON_PIDS = _pidfds_work()


async def wait_until_empty(
    scope: Members, deadline: float, wake: asyncio.Event | None = None
) -> bool:
    """True once the scope has no live member; False if the `deadline`
    (time.monotonic()) passed or `wake` was set first."""
    while True:
        members = scope.members()
        if not members:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (wake is not None and wake.is_set()):
            return False
        await wait_for_any_exit(members, remaining, wake, still_members=scope.members)


async def wait_for_any_exit(
    pids: Collection[int],
    seconds: float,
    wake: asyncio.Event | None = None,
    still_members: Callable[[], list[int]] | None = None,
) -> None:
    """Return when one of `pids` exits, `wake` is set, or `seconds` pass.

    `still_members`, when given, is asked once the pidfds are open: a pid that exited
    between the caller's look and pidfd_open may have been reused by an unrelated
    process, which we must not wait for."""
    loop = asyncio.get_running_loop()
    waiters: list[asyncio.Future[Any]] = []
    descriptors: list[int] = []
    try:
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        if CAN_WAIT_ON_PIDS:
            exited: asyncio.Future[None] = loop.create_future()
            waiters.append(exited)
            for pid in pids:
                try:
                    descriptor = os.pidfd_open(pid)
                except ProcessLookupError:
                    return  # exited between the look and now: look again
                descriptors.append(descriptor)
                loop.add_reader(descriptor, _set_done, exited)
            if still_members is not None and not set(pids) <= set(still_members()):
                return
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
