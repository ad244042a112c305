"""How the server process tunes the Python interpreter: the cyclic garbage collector,
and how soon a thread waiting for the GIL gets it.

**Garbage collection.** A server holding thousands of live builds has a large heap of
long-lived objects (each live build: its actor and task, build, stages, jobs, steps,
timers, ~30-60 objects), and CPython's default thresholds (700, 10, 10) make it scan
that heap often: measured with bench/ (2 cores, 5,000 running builds of 2 jobs
submitted, then cancelled by one CancelBuilds), 12-15 full collections of up to
~350 ms each, 2.5 s in all, half of the CancelBuilds' 4-4.5 s; a stop signal that
comes during one waits that long. Two settings, taken once the server has started:

- `gc.freeze()`: what exists after start-up (modules, classes, protobuf descriptors,
  gRPC's objects, the builds recovered from the store) lives as long as the process;
  no collection needs to look at it again.
- a first-generation threshold of 100,000 allocations instead of 700. The count is
  of container objects allocated less those freed, so a server whose heap does not
  grow (builds ending as others start) collects rarely whatever the threshold; a mass
  cancel grows it (each cancelled build's events, change sets, futures and messages
  are alive until its commit). There, with 10,000, the same 5,000-build cancel ran 41
  young collections of 3-12 ms (each scans everything allocated since the last and
  still alive) and 3 middle ones of ~25-35 ms: ~270 ms of its ~2.5 s; with 100,000,
  about 70 ms in all. The cost is cyclic garbage waiting longer to be freed (the
  actors leave no cycles behind, actors/timers.py: close, so a finished build is
  freed by reference counting); the memory benchmark's RSS per live build is the
  same with either threshold (8.2 KiB).

**The GIL's switch interval.** SQLite runs on its own thread (aiosqlite), which gives
the GIL up around every statement's C work and must take it back before the next; a
busy event loop hands it back only when the switch interval (5 ms by default) forces
it. A group commit of ~15 statements so waited up to ~75 ms on top of its work, and a
mass cancel's results commits took 130-300 ms for ~50 ms of work. At 1 ms the loop
thread gives the GIL up sooner; a thread with nothing to run costs nothing more.
Measured (bench/ scenario 6, 5,000 builds x 2 jobs, one CancelBuilds, three runs
each, batches of 500): every CANCELING committed after 1.88-2.15 s at 5 ms, 1.58-1.94
s at 1 ms.
"""

from __future__ import annotations

import gc
import sys

FIRST_GENERATION_THRESHOLD = 100_000
SWITCH_INTERVAL_SECONDS = 0.001


def tune_for_server() -> None:
    """Call once, after start-up (and recovery) is done."""
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION_THRESHOLD, second, third)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
