"""AssignJobs of given commands and a recorder of what a job sends."""

from __future__ import annotations

from buildcontrol_proto.v1 import agent_pb2


class Recorder:
    """The `emit` callback: keeps every message the job sends."""

    def __init__(self) -> None:
        self.messages: list[agent_pb2.ConnectRequest] = []

    def __call__(self, message: agent_pb2.ConnectRequest) -> None:
        self.messages.append(message)

    def kinds(self) -> list[str]:
        return [str(message.WhichOneof("event")) for message in self.messages]

    def last(self) -> agent_pb2.ConnectRequest:
        return self.messages[-1]


def make_job(job_id: str, *commands: str, env: dict[str, str] | None = None) -> agent_pb2.AssignJob:
    return agent_pb2.AssignJob(
        build_id="b00000000000000000001",
        job_id=job_id,
        name="test",
        steps=[agent_pb2.AssignedStep(index=i, command=c) for i, c in enumerate(commands)],
        env=env or {},
    )
