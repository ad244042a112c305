"""Who may cancel a build: per pipeline, BROAD (any operator) or RESTRICTED (the
build's submitter, or an admin). Pipelines are RESTRICTED when their name matches one
of the `--restricted-pipeline` patterns (shell-style: `deploy-*`; `*` for all)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase

from buildcontrol_server.domain.errors import PermissionDenied
from buildcontrol_server.security.principals import Principal, Role


class CancelPolicy(StrEnum):
    BROAD = "BROAD"
    RESTRICTED = "RESTRICTED"


@dataclass(frozen=True)
class CancelRules:
    restricted_patterns: tuple[str, ...] = ()

    def policy_of(self, pipeline: str) -> CancelPolicy:
        if any(fnmatchcase(pipeline, pattern) for pattern in self.restricted_patterns):
            return CancelPolicy.RESTRICTED
        return CancelPolicy.BROAD

    def check(
        self, principal: Principal, build_id: str, pipeline: str, submitted_by: str | None
    ) -> None:
        """Raise PermissionDenied unless `principal` may cancel this build."""
        if not principal.authenticated:
            return  # authentication is off: there is nobody to tell apart
        if not principal.at_least(Role.OPERATOR):
            raise PermissionDenied(f"{principal.name} ({principal.role}) may not cancel builds")
        if principal.at_least(Role.ADMIN) or self.policy_of(pipeline) is CancelPolicy.BROAD:
            return
        # A build submitted before authentication was on has no submitter: only an
        # admin may cancel it under RESTRICTED.
        if submitted_by is not None and submitted_by == principal.name:
            return
        raise PermissionDenied(
            f"pipeline {pipeline!r} is RESTRICTED: only its submitter or an admin may "
            f"cancel build {build_id}"
        )
