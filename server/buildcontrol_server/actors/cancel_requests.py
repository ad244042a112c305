"""Cancels that do not come from a Cancel call's own arguments: the ones the server
makes itself, and the check of who may cancel a build."""

from __future__ import annotations

from collections.abc import Callable

from buildcontrol_server.config import Settings
from buildcontrol_server.domain.model import Build, CancelInfo

# Raises PermissionDenied for a build the caller may not cancel (security/caller.py);
# None: no check (authentication off).
MayCancel = Callable[[Build], None] | None


def server_cancel(
    reason: str, settings: Settings, now: float, requested_by: str = "server"
) -> CancelInfo:
    """A cancel the server makes itself (timeouts), or on behalf of a submitter
    (superseded builds: `requested_by` is the newer build's submitter)."""
    return CancelInfo(reason, requested_by, False, settings.default_grace_period, now)
