"""The one interceptor that decides who may call what.

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
from dataclasses import dataclass
from typing import Any

import grpc

from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.rpc.errors import abort_with
from buildcontrol_server.security import audit, undecodable
from buildcontrol_server.security.access_rules import AGENT_CONNECT, REQUIRED_ROLE, is_open
from buildcontrol_server.security.caller import Caller, bind
from buildcontrol_server.security.cancel_policy import CancelRules
from buildcontrol_server.security.principals import ANONYMOUS, Principal
from buildcontrol_server.security.tokens import TokenRegistry

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]

_AUDITED_CODES = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    message: str
    principal: Principal | None = None


def _bearer_token(metadata: Any) -> str | Refusal:
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        return Refusal(grpc.StatusCode.UNAUTHENTICATED, "authorization: a bearer token is required")
    if len(values) > 1 or not isinstance(values[0], str):
        return Refusal(grpc.StatusCode.UNAUTHENTICATED, "authorization: give exactly one token")
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return Refusal(grpc.StatusCode.UNAUTHENTICATED, "authorization: expected 'Bearer <token>'")
    return token


def _has_client_certificate(context: grpc.aio.ServicerContext) -> bool:
    # Present only when the TLS handshake verified a client certificate against the
    # client CA (grpc sets the x509 properties of the peer from it).
    return bool(context.auth_context().get("x509_pem_cert"))


def _code_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()
    if isinstance(code, grpc.StatusCode) or code is None:
        return code
    # Some grpc versions report the raw integer of the status.
    return next((c for c in grpc.StatusCode if c.value[0] == code), None)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        tokens: TokenRegistry | None,
        rules: CancelRules,
        agents_need_certificate: bool = False,
    ) -> None:
        """`tokens` None: authentication is off."""
        self._tokens = tokens
        self._rules = rules
        self._agents_need_certificate = agents_need_certificate

    def _decide(self, method: str, metadata: Any) -> Caller | Refusal:
        if self._tokens is None:
            return Caller(ANONYMOUS, self._rules)
        token = _bearer_token(metadata)
        if isinstance(token, Refusal):
            return token
        principal = self._tokens.authenticate(token)
        if principal is None:
            return Refusal(grpc.StatusCode.UNAUTHENTICATED, "unknown or revoked token")
        needed = REQUIRED_ROLE.get(method)
        if needed is None:
            return Refusal(
                grpc.StatusCode.PERMISSION_DENIED, f"{method} is open to nobody", principal
            )
        if not principal.at_least(needed):
            return Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{principal.name} ({principal.role}) may not call {method.rsplit('/', 1)[-1]}"
                f" (needs {needed})",
                principal,
            )
        return Caller(principal, self._rules)

    async def _admit(
        self, decision: Caller | Refusal, method: str, context: grpc.aio.ServicerContext
    ) -> Caller:
        """The caller to run as; a refusal is audited and aborts the call (AbortError)."""
        if (
            isinstance(decision, Caller)
            and method == AGENT_CONNECT
            and self._agents_need_certificate
            and not _has_client_certificate(context)
        ):
            decision = Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                "agents must present a client certificate (mutual TLS)",
                decision.principal,
            )
        if isinstance(decision, Refusal):
            who = decision.principal
            audit.refused(
                who.name if who else "-",
                who.role.value if who else "-",
                method,
                decision.code.name,
                context.peer(),
                decision.message,
            )
            await context.abort(decision.code, decision.message)
        assert isinstance(decision, Caller)
        if decision.principal.authenticated:
            # With auth off there is nobody to name; the cancel path logs its own lines.
            audit.allowed(decision.principal.name, decision.principal.role, method, context.peer())
        # Not reset afterwards: the call's task (and its context) ends with the call.
        bind(decision)
        return decision

    def _after(self, caller: Caller, method: str, context: grpc.aio.ServicerContext) -> None:
        code = _code_of(context)
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

    def _wrap(
        self,
        behavior: Behavior,
        decision: Caller | Refusal,
        method: str,
        request_streaming: bool,
    ) -> Behavior:
        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> tuple[Caller, Any]:
            caller = await self._admit(decision, method, context)
            # Only an admitted caller learns that its bytes did not parse.
            if request_streaming:
                return caller, undecodable.checked(request)
            if isinstance(request, undecodable.Undecodable):
                await abort_with(context, InvalidArgument("request", request.problem))
            return caller, request

        if inspect.isasyncgenfunction(behavior):

            async def streamed(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                caller, request = await admitted(request, context)
                try:
                    async for response in behavior(request, context):
                        yield response
                finally:
                    self._after(caller, method, context)

            return streamed

        async def awaited(request: Any, context: grpc.aio.ServicerContext) -> Any:
            caller, request = await admitted(request, context)
            try:
                return await behavior(request, context)
            finally:
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
        decision = self._decide(method, handler_call_details.invocation_metadata)
        for attribute, factory in _SHAPES:
            behavior = getattr(handler, attribute)
            if behavior is not None:
                return factory(
                    self._wrap(behavior, decision, method, handler.request_streaming),
                    request_deserializer=undecodable.tolerant(handler.request_deserializer),
                    response_serializer=handler.response_serializer,
                )
        return handler


_SHAPES = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)
