"""The one interceptor that decides who may call what (it lives with rpc/ because it
answers with gRPC statuses; every one of them comes from the error catalog,
rpc/errors.py, like the handlers' own).

For every RPC except health and reflection: read `authorization: Bearer <token>` from
the metadata, find the token's principal, check the method's role (access_rules.py),
and for AgentService.Connect under mutual TLS a verified client certificate. A refusal
answers UNAUTHENTICATED (no valid token) or PERMISSION_DENIED (not allowed) before the
handler runs, so nothing is read or changed. An admitted call runs with its Caller
bound (caller.py), and a request that is not valid protobuf ends with INVALID_ARGUMENT
(undecodable.py) rather than grpc's UNKNOWN. Refusals the handler itself makes later
(the cancel policy, an agent claiming another agent's id or job) are audited here too,
from the status the call ends with.

With authentication off every call runs as ANONYMOUS and only the certificate rule
applies. As in the metrics interceptor, each handler is wrapped by a function of the
same kind (coroutine or async generator): grpc.aio runs a streaming handler by its kind."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import grpc

from buildcontrol_server.domain.errors import (
    DomainError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from buildcontrol_server.rpc.auth_refusals import (
    UNKNOWN_TOKEN,
    Refusal,
    bearer_token,
    code_of,
    has_client_certificate,
)
from buildcontrol_server.rpc.errors import STATUS_OF, abort_with
from buildcontrol_server.rpc.job_admission import JobAdmission, finished
from buildcontrol_server.security import audit, certificate_identity, header_check, undecodable
from buildcontrol_server.security.access_rules import (
    AGENT_CONNECT,
    LOG_TAIL_SECONDS,
    REQUIRED_ROLE,
    UPLOAD_LOGS,
    is_open,
)
from buildcontrol_server.security.caller import Caller, bind
from buildcontrol_server.security.cancel_policy import CancelRules
from buildcontrol_server.security.job_tokens import JobAccess, is_job_token
from buildcontrol_server.security.open_calls import (
    CallEnded,
    OpenCall,
    OpenCalls,
    iterate_until_ended,
    run_until_ended,
)
from buildcontrol_server.security.principals import ANONYMOUS
from buildcontrol_server.security.token_registry import TokenRegistry
from buildcontrol_server.security.tokens import token_hash

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]

_AUDITED_CODES = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        tokens: TokenRegistry | None,
        rules: CancelRules,
        agents_need_certificate: bool = False,
        jobs: JobAccess | None = None,
    ) -> None:
        """`tokens` None: authentication is off. `jobs` None: no job tokens."""
        self._tokens = tokens
        self._rules = rules
        self._agents_need_certificate = agents_need_certificate
        self._jobs = None if jobs is None else JobAdmission(jobs, rules)
        self.open_calls = OpenCalls()
        if tokens is not None:
            tokens.on_change = self.end_revoked_calls

    def admit_jobs(self, jobs: JobAccess) -> None:
        """Accept job tokens from now on (once their key is read)."""
        self._jobs = JobAdmission(jobs, self._rules)

    # ---- revocation of open calls ----

    def end_revoked_calls(self) -> int:
        """End the open calls whose token is gone or changed, or whose job finished."""
        in_force = self._tokens.principals_by_digest() if self._tokens is not None else {}

        def verdict(call: OpenCall) -> str | None:
            if call.principal.job is not None:
                return self._job_finished(call)
            if call.token_digest is None or in_force.get(call.token_digest) == call.principal:
                return None
            return f"the token of {call.principal.name!r} was revoked"

        return self.open_calls.end_where(verdict)

    def end_finished_job_calls(self) -> int:
        """End the open calls of job tokens whose job finished."""
        return self.open_calls.end_where(self._job_finished)

    def _job_finished(self, call: OpenCall) -> str | None:
        return None if self._jobs is None else self._jobs.finished_here(call)

    async def end_finished_elsewhere(self) -> int:
        """End the open calls of job tokens whose build another replica runs, once the
        store says their job finished."""
        if self._jobs is None:
            return 0
        done = set(await self._jobs.finished_elsewhere(self.open_calls.snapshot()))

        def verdict(call: OpenCall) -> str | None:
            job = call.principal.job
            return finished(job).message if job is not None and call in done else None

        return self.open_calls.end_where(verdict)

    def _revoked(self, call: OpenCall) -> Callable[[], str | None]:
        def revoked() -> str | None:
            if self._tokens is not None:
                self._tokens.refresh()  # a changed tokens file ends calls at once
            finished = self._job_finished(call)
            if finished is not None:
                call.end(finished)
            return call.reason if call.ended.is_set() else None

        return revoked

    # ---- admission ----

    def _decide(self, method: str, token: str | Refusal | None) -> Caller | Refusal:
        if token is None:
            return Caller(ANONYMOUS, self._rules)
        if isinstance(token, Refusal):
            return token
        if self._jobs is not None and is_job_token(token):
            return self._jobs.decide(method, token)
        assert self._tokens is not None
        principal = self._tokens.authenticate(token)
        if principal is None:
            return UNKNOWN_TOKEN
        needed = REQUIRED_ROLE.get(method)
        if needed is None:
            return Refusal(PermissionDenied(f"{method} is open to nobody"), principal)
        if not principal.at_least(needed):
            return Refusal(
                PermissionDenied(
                    f"{principal.name} ({principal.role}) may not call"
                    f" {method.rsplit('/', 1)[-1]} (needs {needed})"
                ),
                principal,
            )
        return Caller(principal, self._rules)

    @staticmethod
    def _scoped(decision: Caller | Refusal, request: Any) -> Caller | Refusal:
        """A job token reads its own build only (the request names the build)."""
        if not isinstance(decision, Caller) or decision.principal.job is None:
            return decision
        build_id = getattr(request, "build_id", None)
        if build_id != decision.principal.job.build_id:
            return Refusal(
                PermissionDenied(
                    f"a job token of build {decision.principal.job.build_id} may not read "
                    "another build"
                ),
                decision.principal,
            )
        return decision

    def _certified(self, decision: Caller | Refusal, method: str, context: Any) -> Caller | Refusal:
        """Under mutual TLS an agent stream needs a verified client certificate, and
        may connect only as an agent id that certificate names."""
        if (
            not isinstance(decision, Caller)
            or method != AGENT_CONNECT
            or not self._agents_need_certificate
        ):
            return decision
        if not has_client_certificate(context):
            return Refusal(
                Unauthenticated("agents must present a client certificate (mutual TLS)"),
                decision.principal,
            )
        ids = certificate_identity.agent_ids(context.auth_context())
        return replace(decision, certificate_agent_ids=ids)

    async def _admit(
        self, decision: Caller | Refusal, method: str, context: grpc.aio.ServicerContext
    ) -> Caller:
        """The caller to run as; a refusal is audited and aborts the call (AbortError)."""
        decision = self._certified(decision, method, context)
        if isinstance(decision, Refusal):
            who = decision.principal
            if decision.audited:
                audit.refused(
                    who.name if who else "-",
                    who.role.value if who else "-",
                    method,
                    STATUS_OF[decision.error.code].name,
                    context.peer(),
                    decision.error.message,
                )
            await abort_with(context, decision.error)
        assert isinstance(decision, Caller)
        if decision.principal.authenticated:
            # With auth off there is nobody to name; the cancel path logs its own lines.
            audit.allowed(decision.principal.name, decision.principal.role, method, context.peer())
        return decision

    def _after(self, caller: Caller, method: str, context: grpc.aio.ServicerContext) -> None:
        code = code_of(context)
        if code in _AUDITED_CODES:
            details = context.details() if hasattr(context, "details") else ""
            audit.refused(
                caller.principal.name,
                caller.principal.role.value,
                method,
                code.name if code else "",
                context.peer(),
                str(details or ""),
            )

    def _open(
        self, caller: Caller, digest: str | None, method: str
    ) -> tuple[Caller, OpenCall | None]:
        """Register a long-lived call (authenticated only) so a revocation reaches it."""
        if not caller.principal.authenticated:
            return caller, None
        grace = LOG_TAIL_SECONDS if method == UPLOAD_LOGS else 0.0
        call = self.open_calls.add(caller.principal, digest, grace)
        return replace(caller, revoked=self._revoked(call)), call

    async def _admitted(
        self,
        decision: Caller | Refusal,
        method: str,
        handler: grpc.RpcMethodHandler,
        digest: str | None,
        request: Any,
        context: grpc.aio.ServicerContext,
    ) -> tuple[Caller, Any, OpenCall | None]:
        """Admit the call (or abort it), bind its caller, register it if long-lived."""
        request_streaming = handler.request_streaming
        scoped = decision if request_streaming else self._scoped(decision, request)
        caller = await self._admit(scoped, method, context)
        call = None
        if request_streaming or handler.response_streaming:
            caller, call = self._open(caller, digest, method)
        # Not reset afterwards: the call's task (and its context) ends with the call.
        bind(caller)
        # Only an admitted caller learns that its bytes did not parse.
        if request_streaming:
            return caller, undecodable.checked(request), call
        if isinstance(request, undecodable.Undecodable):
            await abort_with(context, InvalidArgument("request", request.problem))
        return caller, request, call

    def _wrap(
        self,
        behavior: Behavior,
        decision: Caller | Refusal,
        method: str,
        handler: grpc.RpcMethodHandler,
        digest: str | None,
    ) -> Behavior:

        async def admitted(
            request: Any, context: grpc.aio.ServicerContext
        ) -> tuple[Caller, Any, OpenCall | None]:
            return await self._admitted(decision, method, handler, digest, request, context)

        if inspect.isasyncgenfunction(behavior):

            async def streamed(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                caller, request, call = await admitted(request, context)
                try:
                    messages = behavior(request, context)
                    if call is not None:
                        messages = iterate_until_ended(messages, call)
                    async for response in messages:
                        yield response
                except CallEnded as ended:
                    await abort_with(context, Unauthenticated(ended.reason))
                finally:
                    if call is not None:
                        self.open_calls.remove(call)
                    self._after(caller, method, context)

            return streamed

        async def awaited(request: Any, context: grpc.aio.ServicerContext) -> Any:
            caller, request, call = await admitted(request, context)
            try:
                if call is None:
                    return await behavior(request, context)
                return await run_until_ended(behavior(request, context), call)
            except CallEnded as ended:
                await abort_with(context, Unauthenticated(ended.reason))
            finally:
                if call is not None:
                    self.open_calls.remove(call)
                self._after(caller, method, context)

        return awaited

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_open(method):
            return handler  # unknown: grpc answers UNIMPLEMENTED; open: health, reflection
        metadata = handler_call_details.invocation_metadata
        decision, digest = self._decision_of(method, metadata)
        if decision is UNKNOWN_TOKEN and self._tokens and await self._tokens.changed_since():
            decision, digest = self._decision_of(method, metadata)  # made a moment ago
        if self._jobs is not None:
            decision = await self._jobs.confirmed(decision, method)
        for attribute, factory in _SHAPES:
            behavior = getattr(handler, attribute)
            if behavior is not None:
                return factory(
                    self._wrap(behavior, decision, method, handler, digest),
                    request_deserializer=undecodable.tolerant(handler.request_deserializer),
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _decision_of(self, method: str, metadata: Any) -> tuple[Caller | Refusal, str | None]:
        """The decision, and the SHA-256 of the bearer token it was made on (if any)."""
        bad_header = header_check.non_ascii_header(metadata)
        if bad_header is not None:
            # Refused before authentication, without an audit line per request: the
            # rate-limited warning of header_check is all the log gets.
            header = f"request header {bad_header!r}"
            error: DomainError = (
                Unauthenticated(f"{header}: {header_check.PROBLEM}")
                if bad_header == "authorization"
                else InvalidArgument(header, header_check.PROBLEM)
            )
            return Refusal(error, audited=False), None
        token = None if self._tokens is None else bearer_token(metadata)
        digest = token_hash(token) if isinstance(token, str) and not is_job_token(token) else None
        return self._decide(method, token), digest


_SHAPES = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)
