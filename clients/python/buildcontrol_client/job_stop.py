"""A stop of one job as the agent keeps it: who asked, how strict it is."""

from __future__ import annotations

from dataclasses import dataclass

from buildcontrol_proto.v1 import build_pb2

from buildcontrol_client.process_runner import StopOutcome

OUTCOME_ON_WIRE = {
    StopOutcome.GRACEFUL: build_pb2.JOB_OUTCOME_GRACEFUL,
    StopOutcome.KILLED: build_pb2.JOB_OUTCOME_KILLED,
}


@dataclass
class StopRequest:
    grace_seconds: float
    # A stop the server asked for is answered with JobStopped. One the agent started
    # for its own shutdown is a failure of the job from the server's point of view.
    by_server: bool
    # Longest the cleanup steps may run together once the stop is done.
    cleanup_seconds: float
    # A forced stop (skip_cleanup): SIGKILL at once, no cleanup, outcome KILLED.
    forced: bool = False
    # The agent itself is leaving: no cleanup starts (its shutdown grace is short and
    # the job is reported failed anyway).
    agent_leaving: bool = False

    @property
    def runs_cleanup(self) -> bool:
        return self.by_server and not self.forced and not self.agent_leaving
