"""The caller of the RPC being served, as the servicers and the control see it.

The interceptor binds a Caller in a context variable before the handler runs; grpc.aio
runs every RPC in a task of its own (and tasks the handler creates copy its context),
so the variable is per call. There is no default: a handler reached without the
interceptor raises LookupError (INTERNAL) instead of running as nobody in particular."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass

from buildcontrol_server.domain.errors import PermissionDenied, Unauthenticated
from buildcontrol_server.domain.model import Build
from buildcontrol_server.security.agent_id_patterns import matches
from buildcontrol_server.security.cancel_policy import CancelRules
from buildcontrol_server.security.principals import Principal, Role


def _always_valid() -> str | None:
    return None


@dataclass(frozen=True)
class Caller:
    principal: Principal
    rules: CancelRules
    # Under mutual TLS, the agent ids the client certificate speaks for
    # (certificate_identity.py); None: no certificate is required.
    certificate_agent_ids: tuple[str, ...] | None = None
    # Why the call's credential no longer holds (revoked), or None; a long-lived call
    # asks before acting on what it receives (open_calls.py).
    revoked: Callable[[], str | None] = _always_valid

    def check_still_valid(self) -> None:
        reason = self.revoked()
        if reason is not None:
            raise Unauthenticated(reason)

    def requested_by(self, claimed: str) -> str:
        """Who a cancel is recorded as: the token's principal. The request's own
        requested_by counts only while authentication is off."""
        if self.principal.authenticated:
            return self.principal.name
        return claimed or "anonymous"

    @property
    def submitter(self) -> str | None:
        """Recorded with a new build; None while authentication is off (unknown)."""
        return self.principal.name if self.principal.authenticated else None

    def check_cancel(self, build: Build) -> None:
        self.rules.check(self.principal, build.build_id, build.pipeline, build.submitted_by)

    def check_agent_id(self, agent_id: str) -> None:
        """An agent token connects as its own agent id only, and under mutual TLS
        only as an agent id its client certificate names (with auth off too)."""
        certified = self.certificate_agent_ids
        if certified is not None and agent_id not in certified:
            raise PermissionDenied(
                f"hello.agent_id: the client certificate is not agent {agent_id[:200]!r}"
            )
        principal = self.principal
        if not principal.authenticated:
            return
        allowed = principal.agent_id
        if principal.role is not Role.AGENT or allowed is None or not matches(allowed, agent_id):
            raise PermissionDenied(
                f"hello.agent_id: the token of {principal.name!r} may not connect as "
                f"agent {agent_id[:200]!r}"
            )


def submitter_of(build: Build, rules: CancelRules) -> Caller:
    """The caller a superseding build's cancels are re-applied as on recovery: its
    submitter, as an operator. The role it had at submit is not stored, so an admin's
    supersede may be narrower after a crash (the new build then waits), never wider."""
    name = build.submitted_by or "(unknown submitter)"
    return Caller(Principal(name, Role.OPERATOR), rules)


_CURRENT: ContextVar[Caller] = ContextVar("buildcontrol_caller")


def current() -> Caller:
    return _CURRENT.get()


def bind(caller: Caller) -> Token[Caller]:
    return _CURRENT.set(caller)


def unbind(token: Token[Caller]) -> None:
    _CURRENT.reset(token)
