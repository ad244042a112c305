"""What the authentication interceptor (auth_interceptor.py) reads of a call's metadata
and TLS peer, and the refusal it answers with (a domain error from the one catalog)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from buildcontrol_server.domain.errors import DomainError, Unauthenticated
from buildcontrol_server.security.principals import Principal


@dataclass(frozen=True)
class Refusal:
    # What the caller is told (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT).
    error: DomainError
    principal: Principal | None = None
    # False for refusals that must not cost a log line each (header_check.py).
    audited: bool = True


# A bearer token that is not among the tokens in force (as far as this server knows).
UNKNOWN_TOKEN = Refusal(Unauthenticated("unknown or revoked token"))


def bearer_token(metadata: Any) -> str | Refusal:
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        return Refusal(Unauthenticated("authorization: a bearer token is required"))
    if len(values) > 1 or not isinstance(values[0], str):
        return Refusal(Unauthenticated("authorization: give exactly one token"))
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return Refusal(Unauthenticated("authorization: expected 'Bearer <token>'"))
    return token


def has_client_certificate(context: grpc.aio.ServicerContext) -> bool:
    # Present only when the TLS handshake verified a client certificate against the
    # client CA (grpc sets the x509 properties of the peer from it).
    return bool(context.auth_context().get("x509_pem_cert"))


def code_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()
    if isinstance(code, grpc.StatusCode) or code is None:
        return code
    # Some grpc versions report the raw integer of the status.
    return next((c for c in grpc.StatusCode if c.value[0] == code), None)
