"""Long-lived calls (agent streams, WatchBuild, Cancel streams) that a revocation must
reach. Checking the token once, when a call starts, is not enough: a stream can live
for days. So every such call is registered here with the principal and token it was
admitted with, and ended with UNAUTHENTICATED when that token leaves the tokens file
(or changes principal), or, for a job token, when its job finishes.

Ending a call from outside its task: the handler runs in a child task (a coroutine
handler) or step by step in child tasks (an async-generator handler); when the call is
ended, the child is cancelled and the call's own task answers UNAUTHENTICATED. The
call's task itself is never cancelled by us, so grpc's cancellation stays grpc's."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from buildcontrol_server import metrics
from buildcontrol_server.security.principals import Principal

T = TypeVar("T")
log = logging.getLogger(__name__)


class CallEnded(Exception):
    """The call's credential no longer holds; `reason` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OpenCall:
    def __init__(
        self, principal: Principal, token_digest: str | None, grace_seconds: float = 0.0
    ) -> None:
        self.principal = principal
        # SHA-256 of the bearer token (tokens file), None for a job token.
        self.token_digest = token_digest
        self.ended = asyncio.Event()
        self.reason = ""
        # Until then the end of its job does not end the call (a log upload's tail).
        self._grace_until = time.monotonic() + grace_seconds

    def in_grace(self) -> bool:
        return time.monotonic() < self._grace_until

    def end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.reason = reason
            self.ended.set()
            metrics.CALLS_ENDED_BY_REVOCATION.inc()


class OpenCalls:
    def __init__(self) -> None:
        self._calls: set[OpenCall] = set()

    def add(
        self, principal: Principal, token_digest: str | None, grace_seconds: float = 0.0
    ) -> OpenCall:
        call = OpenCall(principal, token_digest, grace_seconds)
        self._calls.add(call)
        return call

    def remove(self, call: OpenCall) -> None:
        self._calls.discard(call)

    def end_where(self, verdict: Callable[[OpenCall], str | None]) -> int:
        """End every call for which `verdict` gives a reason; returns how many."""
        ended = 0
        for call in list(self._calls):
            reason = None if call.ended.is_set() else verdict(call)
            if reason is not None:
                call.end(reason)
                ended += 1
        return ended

    def snapshot(self) -> list[OpenCall]:
        """The calls open now, not ended yet."""
        return [call for call in self._calls if not call.ended.is_set()]

    def __len__(self) -> int:
        return len(self._calls)


async def _settle(task: asyncio.Future[Any]) -> None:
    """Cancel `task` (ours) and wait for it; our own cancellation still propagates."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception as error:
        # The call is being ended for its credential; what the handler raised on the
        # way out changes nothing for the caller.
        log.debug("handler of an ended call raised %r", error)


async def _first(
    work: asyncio.Future[T], call: OpenCall, ended: asyncio.Future[Any] | None = None
) -> T:
    """The result of `work`, or CallEnded if the call is ended first. `ended`: a
    waiter on call.ended to reuse (a stream's messages share one)."""
    waiter: asyncio.Future[Any] = ended or asyncio.ensure_future(call.ended.wait())
    either: set[asyncio.Future[Any]] = {work, waiter}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await _settle(work)
        raise
    finally:
        if ended is None:
            waiter.cancel()
    if not work.done():
        await _settle(work)
        raise CallEnded(call.reason)
    return work.result()


async def run_until_ended(coroutine: Coroutine[Any, Any, T], call: OpenCall) -> T:
    return await _first(asyncio.ensure_future(coroutine), call)


async def iterate_until_ended(messages: AsyncIterator[T], call: OpenCall) -> AsyncIterator[T]:
    """`messages`, one by one, until they end or the call is ended (CallEnded)."""
    ended: asyncio.Future[Any] = asyncio.ensure_future(call.ended.wait())
    try:
        while True:
            try:
                message = await _first(asyncio.ensure_future(anext(messages)), call, ended)
            except StopAsyncIteration:
                return
            yield message
    finally:
        ended.cancel()
        closing = getattr(messages, "aclose", None)
        if closing is not None:
            await closing()
