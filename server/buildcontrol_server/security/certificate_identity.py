"""Which agent ids a verified client certificate speaks for (mutual TLS).

A certificate names its agent in a SAN URI whose path ends in `/agent/<agent id>`
(SPIFFE style: `spiffe://ci.example.org/agent/agent-1`) or, failing any such URI, in
its subject CN. When the certificate has such URIs, they win and the CN is not looked
at: a URI is the deliberate, machine-made identity, while a CN is often a host name."""

from __future__ import annotations

from typing import Any

_AGENT_PATH = "/agent/"


def _texts(values: Any) -> list[str]:
    texts = []
    for value in values or ():
        if isinstance(value, bytes):
            texts.append(value.decode("utf-8", "replace"))
        elif isinstance(value, str):
            texts.append(value)
    return texts


def agent_ids(auth_context: dict[str, Any]) -> tuple[str, ...]:
    """The agent ids `auth_context` (grpc's, of a verified peer) may connect as."""
    from_uris = tuple(
        uri.rsplit(_AGENT_PATH, 1)[1]
        for uri in _texts(auth_context.get("peer_uri"))
        if _AGENT_PATH in uri and uri.rsplit(_AGENT_PATH, 1)[1]
    )
    if from_uris:
        return from_uris
    return tuple(_texts(auth_context.get("x509_common_name")))
