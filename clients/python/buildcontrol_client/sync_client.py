"""Blocking twin of BuildControlClient for scripts that do not run an event loop.

It uses grpc's own blocking channel rather than driving the async client from a private
loop: no thread or loop juggling, and it can be tested with grpc_testing.
"""

from __future__ import annotations

import builtins
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any

import grpc
from buildcontrol_proto.message_limits import with_receive_limit
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from buildcontrol_client.auth import auth_metadata
from buildcontrol_client.client import DEFAULT_TIMEOUT_SECONDS
from buildcontrol_client.errors import StreamEndedEarly, translated_rpc_errors
from buildcontrol_client.request_builders import (
    PipelineSpec,
    cancel_builds_request,
    cancel_request,
    submit_request,
)


class SyncBuildControlClient:
    """Same methods as BuildControlClient, blocking. Streams are plain iterators."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
        channel_options: Sequence[tuple[str, Any]] = (),
        channel: grpc.Channel | None = None,
        token: str | None = None,
    ) -> None:
        """`channel` replaces the one made from `target` (tests pass a grpc_testing channel);
        `token` is sent as `authorization: Bearer TOKEN` with every call."""
        self.target = target
        self._timeout = timeout
        self._metadata = auth_metadata(token)
        # Builds at the server's limits are larger than gRPC's default 4 MiB.
        self._channel = channel or grpc.insecure_channel(
            target, options=with_receive_limit(channel_options)
        )
        self._stub: Any = build_control_pb2_grpc.BuildControlStub(self._channel)

    def __enter__(self) -> SyncBuildControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def submit(self, spec: PipelineSpec, request_id: str = "") -> build_pb2.Build:
        with translated_rpc_errors():
            response = self._stub.SubmitBuild(
                submit_request(spec, request_id), timeout=self._timeout, metadata=self._metadata
            )
        build: build_pb2.Build = response.build
        return build

    def get(self, build_id: str) -> build_pb2.Build:
        request = build_control_pb2.GetBuildRequest(build_id=build_id)
        with translated_rpc_errors():
            response = self._stub.GetBuild(request, timeout=self._timeout, metadata=self._metadata)
        build: build_pb2.Build = response.build
        return build

    def list(
        self, page_size: int = 0, page_token: str = "", pipeline: str = ""
    ) -> tuple[builtins.list[build_pb2.Build], str]:
        request = build_control_pb2.ListBuildsRequest(
            page_size=page_size, page_token=page_token, pipeline=pipeline
        )
        with translated_rpc_errors():
            response = self._stub.ListBuilds(
                request, timeout=self._timeout, metadata=self._metadata
            )
        return builtins.list(response.builds), str(response.next_page_token)

    def watch(self, build_id: str) -> Generator[build_control_pb2.WatchBuildResponse, None, None]:
        request = build_control_pb2.WatchBuildRequest(build_id=build_id)
        call = self._stub.WatchBuild(request, metadata=self._metadata)
        try:
            with translated_rpc_errors():
                yield from call
        finally:
            call.cancel()

    def cancel(
        self,
        build_id: str,
        reason: str = "",
        force: bool = False,
        grace_period_seconds: float | None = None,
        requested_by: str = "",
    ) -> Generator[build_control_pb2.CancelResponse, None, None]:
        request = cancel_request(build_id, reason, force, grace_period_seconds, requested_by)
        call = self._stub.Cancel(request, metadata=self._metadata)
        try:
            with translated_rpc_errors():
                yield from call
        finally:
            call.cancel()

    def cancel_and_wait(
        self,
        build_id: str,
        reason: str = "",
        force: bool = False,
        grace_period_seconds: float | None = None,
        requested_by: str = "",
    ) -> build_control_pb2.CancelFinished:
        events = self.cancel(build_id, reason, force, grace_period_seconds, requested_by)
        try:
            for event in events:
                if event.HasField("finished"):
                    return event.finished
        finally:
            events.close()
        raise StreamEndedEarly(f"the Cancel stream of {build_id} ended without CancelFinished")

    def cancel_builds(
        self,
        build_ids: Sequence[str] = (),
        *,
        pipeline: str = "",
        concurrency_group: str = "",
        reason: str = "",
        force: bool = False,
        grace_period_seconds: float | None = None,
        requested_by: str = "",
    ) -> Generator[build_control_pb2.CancelBuildsResponse, None, None]:
        request = cancel_builds_request(
            build_ids,
            pipeline,
            concurrency_group,
            reason,
            force,
            grace_period_seconds,
            requested_by,
        )
        call = self._stub.CancelBuilds(request, metadata=self._metadata)
        try:
            with translated_rpc_errors():
                yield from call
        finally:
            call.cancel()

    def list_agents(self) -> builtins.list[build_control_pb2.Agent]:
        request = build_control_pb2.ListAgentsRequest()
        with translated_rpc_errors():
            response = self._stub.ListAgents(
                request, timeout=self._timeout, metadata=self._metadata
            )
        return builtins.list(response.agents)
