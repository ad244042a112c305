"""The side effects of a finished cancel, as the actors see them (effects/base.py):
hand the record to the audit log and the webhook notifier, and return.

Both only queue, so `cancel_finished` costs microseconds on the actor's turn. It must
never raise into the actor (the cancel is committed; nothing here may undo or delay
it), so an exception from either is logged with its traceback and counted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from buildcontrol_server import metrics
from buildcontrol_server.domain.model import CancelRecord

log = logging.getLogger(__name__)


class Audit(Protocol):
    def record(self, record: CancelRecord) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, timeout: float) -> None: ...  # noqa: ASYNC109


class Notifier(Protocol):
    def notify(self, record: CancelRecord) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, timeout: float) -> None: ...  # noqa: ASYNC109


class SideEffectsRunner:
    """Implements effects.base.SideEffects with an AuditLog and a WebhookNotifier."""

    def __init__(self, audit: Audit, notifier: Notifier) -> None:
        self.audit = audit
        self.notifier = notifier

    def cancel_finished(self, record: CancelRecord) -> None:
        try:
            self.audit.record(record)
        except Exception:
            metrics.SIDE_EFFECT_ERRORS.labels(effect="audit").inc()
            log.exception("audit of build %s could not be queued", record.build_id)
        try:
            self.notifier.notify(record)
        except Exception:
            metrics.SIDE_EFFECT_ERRORS.labels(effect="webhooks").inc()
            log.exception("webhooks of build %s could not be queued", record.build_id)

    async def start(self) -> None:
        """The audit first: its sweep completes the audit before anything new comes."""
        await self.audit.start()
        await self.notifier.start()

    # Shutdown gives each part the same bound, at the same time: the whole stop takes
    # at most `timeout` (plus the ms of cancelling), never the sum.
    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        """Flush the audit and the webhooks, both within `timeout` seconds. Call it after
        the actors stopped (nothing new comes in) and before the store closes (the
        audit writes to it)."""
        results = await asyncio.gather(
            self.audit.stop(timeout), self.notifier.stop(timeout), return_exceptions=True
        )
        for name, result in zip(("audit", "webhooks"), results, strict=True):
            if isinstance(result, Exception):
                log.error("stopping the %s failed", name, exc_info=result)
            elif isinstance(result, BaseException):
                raise result  # cancellation and interrupts are not ours to absorb
