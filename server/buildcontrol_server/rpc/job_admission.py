"""How the interceptor admits job tokens (security/job_tokens.py): the token's HMAC,
the method (JOB_METHODS only), and whether its job is still live, asked of this
server's own build, or of the store for a build another replica runs. An upload of a
job's log is also admitted for LOG_TAIL_SECONDS after the job ended (its last bytes
follow its result), and the job's end does not cut an upload call in its first
LOG_TAIL_SECONDS.
The answers are the interceptor's Refusal and Caller values."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from buildcontrol_server.domain.errors import DomainError, PermissionDenied, Unauthenticated
from buildcontrol_server.rpc.auth_refusals import Refusal
from buildcontrol_server.security.access_rules import JOB_METHODS, UPLOAD_LOGS
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
        # None: another replica's build; an upload may be its log's tail (confirmed()).
        if self._access.is_live(scope) is False and method != UPLOAD_LOGS:
            return Refusal(finished(scope), principal)
        if method not in JOB_METHODS:
            return Refusal(
                PermissionDenied(
                    f"a job token may only read its own build, not call {method.rsplit('/', 1)[-1]}"
                ),
                principal,
            )
        return Caller(principal, self._rules)

    async def confirmed(self, decision: Caller | Refusal, method: str) -> Caller | Refusal:
        """A job token whose job this server does not know live: admitted while the
        store says it is (a build another replica runs), or for an upload of its log
        within LOG_TAIL_SECONDS of its end. Any other decision as it is."""
        job = decision.principal.job if isinstance(decision, Caller) else None
        if job is None:
            return decision
        live = self._access.is_live(job)
        if live:
            return decision
        try:
            if live is None and await self._access.is_live_elsewhere(job):
                return decision
            if method == UPLOAD_LOGS and await self._access.in_log_tail(job):
                return decision
        except DomainError as error:  # the store unreachable: UNAVAILABLE, retried
            return Refusal(error, decision.principal, audited=False)
        return Refusal(finished(job), decision.principal)

    def finished_here(self, call: OpenCall) -> str | None:
        """Why the call's job token no longer holds, as far as this server knows (a
        build another replica runs: finished_elsewhere's to say). An upload carries
        its job's log tail until it is LOG_TAIL_SECONDS old."""
        job = call.principal.job
        if job is None or call.in_grace() or self._access.is_live(job) is not False:
            return None
        return finished(job).message

    async def finished_elsewhere(self, calls: Iterable[OpenCall]) -> list[OpenCall]:
        """Those of `calls` whose job token's build another replica runs and that the
        store says is finished, uploads in their grace left out (one read per job; one
        the store cannot answer counts as live)."""
        asked = [
            call
            for call in calls
            if call.principal.job is not None
            and not call.in_grace()
            and self._access.is_live(call.principal.job) is None
        ]
        done: set[JobScope] = set()
        for scope in {call.principal.job for call in asked if call.principal.job}:
            with contextlib.suppress(DomainError):
                if not await self._access.is_live_elsewhere(scope):
                    done.add(scope)
        return [call for call in asked if call.principal.job in done]


def finished(job: JobScope) -> Unauthenticated:
    return Unauthenticated(f"job token of {job.job_id}: the job has finished")
