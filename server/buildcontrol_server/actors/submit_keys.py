"""Idempotent submits (AIP-155): a SubmitBuild may carry a `request_id`; a retry with
the same key by the same submitter gets the build the first attempt made, never a
second one. The key is stored with the build in one transaction (its table's primary
key makes a second row impossible); here, submits of one key are also run one at a
time, so a retry that overtakes its first attempt waits for it instead of racing it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from buildcontrol_server.actors.registry import Superseded
from buildcontrol_server.domain.errors import AlreadyExists
from buildcontrol_server.store.base import BuildStore

T = TypeVar("T")


@dataclass(frozen=True)
class RequestKey:
    """A submit's idempotency key and the digest of the request it came with."""

    request_id: str
    digest: str


@dataclass(frozen=True)
class Submitted(Generic[T]):
    """A new build as rendered, and what its cancel_in_progress did."""

    build: T
    superseded: Superseded = field(default_factory=Superseded)
    # The request_id repeated an earlier submit: `build` is that one's, nothing was made.
    replayed: bool = False


class SubmitKeys:
    def __init__(self, store: BuildStore) -> None:
        self._store = store
        self._in_progress: dict[tuple[str, str], asyncio.Event] = {}

    @asynccontextmanager
    async def claimed(self, submitter: str, request: RequestKey) -> AsyncIterator[str | None]:
        """Hold the key while the submit runs; yields the build id a finished submit of
        the same key made (None: make the build). AlreadyExists if that submit had
        another request body."""
        key = (submitter, request.request_id)
        while (busy := self._in_progress.get(key)) is not None:
            await busy.wait()
        done = self._in_progress[key] = asyncio.Event()  # no await since the check
        try:
            found = await self._store.submit_request(submitter, request.request_id)
            if found is not None and found[0] != request.digest:
                raise AlreadyExists(
                    f"request_id: {request.request_id[:200]!r} was used for a different "
                    f"request (build {found[1]})"
                )
            yield None if found is None else found[1]
        finally:
            del self._in_progress[key]
            done.set()
