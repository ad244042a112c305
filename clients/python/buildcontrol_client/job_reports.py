"""What one job says to the server, as ConnectRequest messages handed to `emit` in
order: JobAccepted, StepStarted/StepFinished per step, then exactly one result."""

from __future__ import annotations

from collections.abc import Callable

from buildcontrol_proto.v1 import agent_pb2

from buildcontrol_client.job_stop import OUTCOME_ON_WIRE
from buildcontrol_client.process_runner import StopOutcome

Emit = Callable[[agent_pb2.ConnectRequest], None]


class JobReports:
    def __init__(self, build_id: str, job_id: str, emit: Emit) -> None:
        self._build_id = build_id
        self._job_id = job_id
        self._emit = emit

    def accepted(self) -> None:
        accepted = agent_pb2.JobAccepted(build_id=self._build_id, job_id=self._job_id)
        self._emit(agent_pb2.ConnectRequest(job_accepted=accepted))

    def step_started(self, index: int) -> None:
        started = agent_pb2.StepStarted(
            build_id=self._build_id, job_id=self._job_id, step_index=index
        )
        self._emit(agent_pb2.ConnectRequest(step_started=started))

    def step_finished(self, index: int, exit_code: int) -> None:
        finished = agent_pb2.StepFinished(
            build_id=self._build_id, job_id=self._job_id, step_index=index, exit_code=exit_code
        )
        self._emit(agent_pb2.ConnectRequest(step_finished=finished))

    def finished(self, succeeded: bool, exit_code: int) -> None:
        finished = agent_pb2.JobFinished(
            build_id=self._build_id, job_id=self._job_id, succeeded=succeeded, exit_code=exit_code
        )
        self._emit(agent_pb2.ConnectRequest(job_finished=finished))

    def stopped(self, outcome: StopOutcome, exit_code: int | None) -> None:
        stopped = agent_pb2.JobStopped(
            build_id=self._build_id, job_id=self._job_id, outcome=OUTCOME_ON_WIRE[outcome]
        )
        if exit_code is not None:
            stopped.exit_code = exit_code
        self._emit(agent_pb2.ConnectRequest(job_stopped=stopped))
