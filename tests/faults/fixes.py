"""Which of the fixes this harness was written against are in the code under test.

The harness finds defects that other branches fix; until a fix is merged, the walks
that run into its defect are expected to fail (xfail, not strict: a random walk may
miss a defect). Each fix is recognised by something it must add."""

from __future__ import annotations

from pathlib import Path

import buildcontrol_client
from buildcontrol_proto.v1 import agent_pb2
from buildcontrol_server import metrics


def _has_metric(part: str) -> bool:
    return any(part in str(getattr(value, "_name", "")) for value in vars(metrics).values())


def _client_source_mentions(text: str) -> bool:
    package = Path(buildcontrol_client.__file__).parent
    return any(text in path.read_text() for path in package.glob("*.py"))


def missing(*needed: str) -> list[str]:
    """The fixes among `needed` that are not in the code: "faults-actors" (actor
    supervision: restarts metric), "faults-protocol" (results acknowledged by id:
    ReportsCommitted), "agent-procs" (jobs in cgroups: the agent kills cgroups)."""
    present = {
        "faults-actors": _has_metric("actor_restarts"),
        "faults-protocol": hasattr(agent_pb2, "ReportsCommitted"),
        "agent-procs": _client_source_mentions("cgroup.kill"),
    }
    return [fix for fix in needed if not present[fix]]


# Defects the scripted walks still find with every fix above in the code (found on
# main with faults-actors and faults-protocol merged). The scripted walks are expected
# to fail (xfail) while this lists any; remove an entry once its fix is merged.
OPEN_DEFECTS: list[str] = []
