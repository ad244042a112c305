"""A scripted BuildControl servicer for the CLI tests, its answers, and the CLI's parser."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from buildcontrol_client.cli import register
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

BUILD_ID = "b00000000000000000001"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class FakeBuildControl(build_control_pb2_grpc.BuildControlServicer):
    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Any] = []
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.builds: list[build_pb2.Build] = []
        self.next_page_token = ""
        self.watch_events: list[build_control_pb2.WatchBuildResponse] = []
        # One list of events per WatchBuild call, in order (then watch_events).
        self.watch_streams: list[list[build_control_pb2.WatchBuildResponse]] = []
        self.cancel_events: list[build_control_pb2.CancelResponse] = []
        self.cancel_builds_events: list[build_control_pb2.CancelBuildsResponse] = []
        self.agents: list[build_control_pb2.Agent] = []
        self.metadata: dict[str, str] = {}

    async def SubmitBuild(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        build = build_pb2.Build(
            build_id=BUILD_ID, pipeline=request.pipeline, status=build_pb2.BUILD_STATUS_QUEUED
        )
        return build_control_pb2.SubmitBuildResponse(build=build)

    async def GetBuild(self, request: Any, context: Any) -> Any:
        self.metadata = dict(context.invocation_metadata())
        if self.abort is not None:
            await context.abort(*self.abort)
        return build_control_pb2.GetBuildResponse(build=self.builds[0])

    async def ListBuilds(self, request: Any, context: Any) -> Any:
        return build_control_pb2.ListBuildsResponse(
            builds=self.builds, next_page_token=self.next_page_token
        )

    async def WatchBuild(self, request: Any, context: Any) -> AsyncIterator[Any]:
        events = self.watch_streams.pop(0) if self.watch_streams else self.watch_events
        for event in events:
            yield event

    async def Cancel(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.requests.append(request)
        if self.abort is not None:
            await context.abort(*self.abort)
        for event in self.cancel_events:
            yield event

    async def CancelBuilds(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.requests.append(request)
        for event in self.cancel_builds_events:
            yield event

    async def ListAgents(self, request: Any, context: Any) -> Any:
        return build_control_pb2.ListAgentsResponse(agents=self.agents)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="buildcontrol")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def watch(**event: Any) -> build_control_pb2.WatchBuildResponse:
    return build_control_pb2.WatchBuildResponse(**event)


def stocked(
    fake: FakeBuildControl,
    terminal: build_pb2.BuildStatus = build_pb2.BUILD_STATUS_CANCELED,
) -> None:
    """Give the fake one answer for every call, the build ending in `terminal`."""
    build = build_pb2.Build(build_id=BUILD_ID, pipeline="hello", status=terminal)
    build.stages.add(name="s").jobs.add(job_id=f"{BUILD_ID}-j0", name="j")
    fake.builds = [build]
    fake.watch_events = [
        watch(snapshot=build_pb2.Build(build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_RUNNING)),
        watch(build_changed=build_control_pb2.BuildChanged(build_id=BUILD_ID, status=terminal)),
    ]
    finished = build_control_pb2.CancelFinished(
        build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_CANCELED
    )
    fake.cancel_events = [
        build_control_pb2.CancelResponse(accepted=build_control_pb2.CancelAccepted()),
        build_control_pb2.CancelResponse(finished=finished),
    ]
    fake.cancel_builds_events = [
        build_control_pb2.CancelBuildsResponse(
            accepted=build_control_pb2.CancelBuildsAccepted(matched=1, committed=1)
        ),
        build_control_pb2.CancelBuildsResponse(build=finished),
        build_control_pb2.CancelBuildsResponse(
            summary=build_control_pb2.CancelBuildsSummary(matched=1, canceled=1)
        ),
    ]
    fake.agents = [build_control_pb2.Agent(agent_id="a1", capacity=2, connected=True)]
