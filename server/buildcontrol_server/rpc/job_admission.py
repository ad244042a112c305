"""How the interceptor admits job tokens (security/job_tokens.py): the token's HMAC,
the method (JOB_METHODS only), and whether its job is still live, asked of this
server's own build, or of the store for a build another replica runs. The answers are
the interceptor's Refusal and Caller values."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from buildcontrol_server.domain.errors import DomainError, PermissionDenied, Unauthenticated
from buildcontrol_server.rpc.auth_refusals import Refusal
from buildcontrol_server.security.access_rules import JOB_METHODS
from buildcontrol_server.security.caller import Caller
from buildcontrol_server.security.cancel_policy import CancelRules
from buildcontrol_server.security.job_tokens import JobAccess, job_principal
from buildcontrol_server.security.open_calls import OpenCall
from buildcontrol_server.security.principals import JobScope


class JobAdmission:
    def __init__(self, access: JobAccess, rules: CancelRules) -> None:
        self._access = access
        self._rules = rules

    def decide(self, method: str, token: str) -> Caller | Refusal:
        """What this server alone can say of a job token; confirmed() completes it."""
        scope = self._access.tokens.verify(token)
        if scope is None:
            return Refusal(Unauthenticated("unknown or revoked token"))
        principal = job_principal(scope)
        if self._access.is_live(scope) is False:  # None: another replica's build
            return Refusal(finished(scope), principal)
        if method not in JOB_METHODS:
            return Refusal(
                PermissionDenied(
                    f"a job token may only read its own build, not call {method.rsplit('/', 1)[-1]}"
                ),
                principal,
            )
        return Caller(principal, self._rules)

    async def confirmed(self, decision: Caller | Refusal) -> Caller | Refusal:
        """A job token of a build another replica runs: admitted while the store says
        its job is live. Any other decision as it is."""
        job = decision.principal.job if isinstance(decision, Caller) else None
        if job is None or self._access.is_live(job) is not None:
            return decision
        try:
            live = await self._access.is_live_elsewhere(job)
        except DomainError as error:  # the store unreachable: UNAVAILABLE, retried
            return Refusal(error, decision.principal, audited=False)
        return decision if live else Refusal(finished(job), decision.principal)

    def finished_here(self, call: OpenCall) -> str | None:
        """Why the call's job token no longer holds, as far as this server knows (a
        build another replica runs: finished_elsewhere's to say)."""
        job = call.principal.job
        if job is None or self._access.is_live(job) is not False:
            return None
        return finished(job).message

    async def finished_elsewhere(self, calls: Iterable[OpenCall]) -> set[JobScope]:
        """The jobs of `calls` whose build another replica runs and that the store
        says are finished (one read per job; one it cannot answer counts as live)."""
        scopes = {
            call.principal.job
            for call in calls
            if call.principal.job is not None and self._access.is_live(call.principal.job) is None
        }
        done: set[JobScope] = set()
        for scope in scopes:
            with contextlib.suppress(DomainError):
                if not await self._access.is_live_elsewhere(scope):
                    done.add(scope)
        return done


def finished(job: JobScope) -> Unauthenticated:
    return Unauthenticated(f"job token of {job.job_id}: the job has finished")
