"""Signed webhooks: an HMAC-SHA256 of the request body with the endpoint's secret, in
`X-Buildcontrol-Signature-256: sha256=<hex>` (GitHub's scheme, so receivers can reuse
their verification code; docs/webhooks.md has a snippet).

Secrets are configured per endpoint by position (the N of the `N:host:port` label):
`--webhook-secret N=file:PATH` (the file's content, surrounding whitespace removed) or
`--webhook-secret N=env:NAME` (an environment variable). The value itself never goes
on the command line (where `ps` would show it), and is kept only as a WebhookSecret,
whose repr hides it, so it reaches no log line, no Settings dump, no RPC."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from buildcontrol_server.config_rules import Rule, RuleError

SIGNATURE_HEADER = "x-buildcontrol-signature-256"
SIGNATURE_PREFIX = "sha256="
SOURCES = ("file", "env")


class WebhookSecret:
    """A secret that does not show itself (repr, str, f-strings)."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "WebhookSecret(***)"

    __str__ = __repr__

    def signature(self, body: bytes) -> str:
        """The header's value for `body`."""
        digest = hmac.new(self._value, body, hashlib.sha256).hexdigest()
        return SIGNATURE_PREFIX + digest


class WebhookSecretError(ValueError):
    """A --webhook-secret that cannot be used; the message never holds a secret."""


def _source(text: str) -> str:
    """The shape of a --webhook-secret (where the secret is; read at start)."""
    index, _, source = text.partition("=")
    kind, _, where = source.partition(":")
    if not index.isdigit() or kind not in SOURCES or not where:
        raise RuleError("N=file:PATH or N=env:NAME (N: the webhook's position, from 0)")
    return text


# No value shown in errors: a secret typed in place of its source must not be echoed.
SECRET_SOURCE = Rule("N=file:PATH or N=env:NAME", _source, "N=file:PATH|N=env:NAME", secret=True)


def load_secrets(
    specs: Sequence[str], endpoints: int, environ: Mapping[str, str] = os.environ
) -> dict[int, WebhookSecret]:
    """Endpoint position → secret, from `N=file:PATH` / `N=env:NAME` specs."""
    secrets: dict[int, WebhookSecret] = {}
    for spec in specs:
        position, value = _secret_of(spec, endpoints, environ)
        if position in secrets:
            raise WebhookSecretError(f"--webhook-secret: webhook #{position} has two secrets")
        secrets[position] = value
    return secrets


def _secret_of(spec: str, endpoints: int, environ: Mapping[str, str]) -> tuple[int, WebhookSecret]:
    index, _, source = spec.partition("=")
    kind, _, where = source.partition(":")
    if not index.isdigit() or kind not in SOURCES or not where:
        raise WebhookSecretError(
            "--webhook-secret: expected N=file:PATH or N=env:NAME (N: the webhook's "
            "position, 0 for the first --webhook-url)"
        )
    position = int(index)
    if position >= endpoints:
        raise WebhookSecretError(
            f"--webhook-secret: webhook #{position} does not exist ({endpoints} configured)"
        )
    if kind == "env":
        text = environ.get(where)
        if text is None:
            raise WebhookSecretError(
                f"--webhook-secret: webhook #{position}: variable {where} is not set"
            )
    else:
        try:
            text = Path(where).read_text()
        except OSError as error:
            raise WebhookSecretError(
                f"--webhook-secret: webhook #{position}: cannot read {where}: {error.strerror}"
            ) from None
    value = text.strip().encode()
    if not value:
        raise WebhookSecretError(f"--webhook-secret: webhook #{position}: the secret is empty")
    return position, WebhookSecret(value)
