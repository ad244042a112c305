"""Linux process attributes the agent sets on itself (prctl(2) through ctypes).

- Not dumpable (PR_SET_DUMPABLE 0): /proc/AGENT/environ, /proc/AGENT/mem and ptrace are
  closed to processes of the same uid, steps included, so a token the agent got from
  its environment cannot be read back from it. (/proc/AGENT/cmdline stays readable by
  everyone: that is why the token never goes on the command line.)
- Child subreaper (PR_SET_CHILD_SUBREAPER): without cgroups, a step's orphans (the
  children of a step that exited, a `setsid` escape) are reparented to the agent rather
  than to PID 1, so the agent still finds and kills them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("buildcontrol.agent")

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return False
    if libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        log.warning("prctl(%d, %d) failed: %s", option, value, os.strerror(ctypes.get_errno()))
        return False
    return True


def make_undumpable() -> bool:
    """Close this process's memory and environment to same-uid processes."""
    return _prctl(PR_SET_DUMPABLE, 0)


def become_child_subreaper(enable: bool = True) -> bool:
    """Orphaned descendants of this process are reparented to it, not to PID 1 (False:
    no longer; orphans adopted so far stay its children)."""
    return _prctl(PR_SET_CHILD_SUBREAPER, int(enable))
