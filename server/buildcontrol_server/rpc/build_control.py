"""BuildControl servicer: checks and converts requests, calls the control, converts
answers. No state and no SQL here."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from buildcontrol_server.actors.control import BuildControl
from buildcontrol_server.domain.errors import FailedPrecondition, InvalidArgument
from buildcontrol_server.domain.submission import BUILD_ID_PATTERN
from buildcontrol_server.effects.webhook_admin import WebhookAdmin
from buildcontrol_server.logs.service import JobLogs
from buildcontrol_server.rpc import convert, log_upload, submit_reply, webhook_convert
from buildcontrol_server.rpc.errors import streaming, unary
from buildcontrol_server.rpc.ready_batches import ready_runs
from buildcontrol_server.security import caller, fair_limits
from buildcontrol_server.security.fair_limits import HeldCounts

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def _summary(build: build_pb2.Build) -> build_pb2.Build:
    summary = build_pb2.Build()
    summary.CopyFrom(build)
    del summary.stages[:]
    return summary


def _page_token(last_build_id: str, pipeline: str) -> str:
    return base64.urlsafe_b64encode(f"{pipeline}\n{last_build_id}".encode()).decode()


def _after(page_token: str, pipeline: str) -> str | None:
    if not page_token:
        return None
    try:
        token_pipeline, last = base64.urlsafe_b64decode(page_token).decode().split("\n", 1)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument("page_token", "is not a token this server issued") from None
    if token_pipeline != pipeline or not BUILD_ID_PATTERN.fullmatch(last):
        raise InvalidArgument("page_token", "does not belong to this listing") from None
    return last


class BuildControlServicer(build_control_pb2_grpc.BuildControlServicer):
    def __init__(
        self,
        control: BuildControl,
        webhooks: WebhookAdmin,
        watch_streams: HeldCounts | None = None,
        logs: JobLogs | None = None,
    ) -> None:
        self._control = control
        # Job logs (GetJobLog, FollowJobLog); None: those answer UNIMPLEMENTED.
        self._logs = logs
        self._webhooks = webhooks
        # Open WatchBuild streams per principal (--max-watch-streams-per-principal).
        self._watch_streams = watch_streams or HeldCounts(
            fair_limits.limit(fair_limits.WATCH_STREAMS, 1_000)
        )

    @unary
    async def SubmitBuild(
        self, request: build_control_pb2.SubmitBuildRequest, context: grpc.aio.ServicerContext
    ) -> build_control_pb2.SubmitBuildResponse:
        who = caller.current()
        submitted = await self._control.submit(
            convert.pipeline_spec(request),
            convert.build,
            who.submitter,
            who.check_cancel,
            submit_reply.request_key(request),
        )
        return submit_reply.response(submitted, request.view)

    @unary
    async def GetBuild(
        self, request: build_control_pb2.GetBuildRequest, context: grpc.aio.ServicerContext
    ) -> build_control_pb2.GetBuildResponse:
        build = await self._control.get(request.build_id, convert.build)
        return build_control_pb2.GetBuildResponse(build=build)

    @unary
    async def ListBuilds(
        self, request: build_control_pb2.ListBuildsRequest, context: grpc.aio.ServicerContext
    ) -> build_control_pb2.ListBuildsResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _after(request.page_token, request.pipeline)
        builds = await self._control.list_builds(size + 1, after, request.pipeline or None)
        page = builds[:size]
        next_token = _page_token(page[-1].build_id, request.pipeline) if len(builds) > size else ""
        return build_control_pb2.ListBuildsResponse(
            builds=[_summary(convert.build(b)) for b in page], next_page_token=next_token
        )

    @streaming
    async def WatchBuild(
        self, request: build_control_pb2.WatchBuildRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[build_control_pb2.WatchBuildResponse]:
        with self._watch_streams.held(fair_limits.holder_of(caller.current().submitter)):
            snapshot, changes = await self._control.watch(request.build_id, convert.build)
            yield build_control_pb2.WatchBuildResponse(snapshot=snapshot)
            async for change in changes:
                yield convert.watch_change(change)

    @streaming
    async def Cancel(
        self, request: build_control_pb2.CancelRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[build_control_pb2.CancelResponse]:
        # Who cancels is the token's principal; requested_by counts only with auth off.
        who = caller.current()
        events = await self._control.cancel(
            request.build_id,
            request.reason,
            request.force,
            convert.grace_period(request),
            who.requested_by(request.requested_by),
            who.check_cancel,
        )
        # Closing the stream only stops these messages; the cancel goes on in the actor.
        async for event in events:
            yield convert.cancel_event(event)

    @streaming
    async def CancelBuilds(
        self, request: build_control_pb2.CancelBuildsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[build_control_pb2.CancelBuildsResponse]:
        who = caller.current()
        events = await self._control.cancel_builds(
            convert.selector(request),
            request.reason,
            request.force,
            convert.grace_period(request),
            who.requested_by(request.requested_by),
            who.check_cancel,
        )
        if not request.batch_builds:
            async for event in events:
                yield convert.cancel_builds_response(event)
            return
        async for run in ready_runs(events, convert.BUILDS_PER_BATCH):
            for message in convert.cancel_builds_batched(run):
                yield message

    @unary
    async def ListAgents(
        self, request: build_control_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> build_control_pb2.ListAgentsResponse:
        return build_control_pb2.ListAgentsResponse(
            agents=[convert.agent(view) for view in self._control.agents()]
        )

    @unary
    async def ListWebhookDeliveries(
        self,
        request: build_control_pb2.ListWebhookDeliveriesRequest,
        context: grpc.aio.ServicerContext,
    ) -> build_control_pb2.ListWebhookDeliveriesResponse:
        if not 0 <= request.limit <= MAX_PAGE_SIZE:
            raise InvalidArgument("limit", f"must be 0 to {MAX_PAGE_SIZE}")
        listing = await self._webhooks.deliveries(request.limit or DEFAULT_PAGE_SIZE)
        return build_control_pb2.ListWebhookDeliveriesResponse(
            deliveries=[webhook_convert.delivery(row) for row in listing]
        )

    @unary
    async def RedeliverWebhook(
        self, request: build_control_pb2.RedeliverWebhookRequest, context: grpc.aio.ServicerContext
    ) -> build_control_pb2.RedeliverWebhookResponse:
        endpoints = await self._webhooks.redeliver(request.delivery_id)
        return build_control_pb2.RedeliverWebhookResponse(endpoints=endpoints)

    @unary
    async def GetJobLog(
        self, request: build_control_pb2.GetJobLogRequest, context: grpc.aio.ServicerContext
    ) -> build_control_pb2.GetJobLogResponse:
        if self._logs is None:
            raise FailedPrecondition("this server stores no logs")
        return await log_upload.get(self._logs, request)

    @streaming
    async def FollowJobLog(
        self, request: build_control_pb2.FollowJobLogRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[build_control_pb2.FollowJobLogResponse]:
        if self._logs is None:
            raise FailedPrecondition("this server stores no logs")
        async for message in log_upload.follow(self._logs, request):
            yield message
