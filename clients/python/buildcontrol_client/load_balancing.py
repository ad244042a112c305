"""Several servers behind one address, on the client's side: the channel options every
channel of the client, the CLI and the agent is opened with.

A target may name one server (`127.0.0.1:50051`) or several
(`ipv4:10.0.0.1:50051,10.0.0.2:50051`, or `dns:///build.example:50051` resolving to
several addresses). Each channel then keeps a connection to every address and spreads
its calls over the ready ones (gRPC's `round_robin` policy); a call answered
UNAVAILABLE (a server stopping, gone, or without its store) is tried again, on the next
server, when running it twice cannot do anything twice:

- reads (GetBuild, ListBuilds, ListAgents, GetJobLog, ListWebhookDeliveries) and the
  start of the read streams (WatchBuild, FollowJobLog);
- Cancel: a second cancel of a build joins the first (same record, `joined: true`), a
  forced one already forced adds nothing, one of a CANCELED build returns it;
- SubmitBuild only when it carries a `request_id` (its idempotency key). gRPC chooses
  a retry policy per method, not per request, so the client retries those itself
  (`retrying_unavailable`, the same number of attempts).

gRPC retries a stream only until its first response arrives; after that a broken
stream ends with its error, for the caller to start again. Never retried: SubmitBuild
without a key, CancelBuilds (its pipeline or group selector would be read again, and
could take in builds submitted in between), RedeliverWebhook, Purge and the agent's
own streams (the agent reconnects by itself, to whichever server answers).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from buildcontrol_client.backoff import Backoff, BackoffPolicy

T = TypeVar("T")

SERVICE = "buildcontrol.v1.BuildControl"

# The methods of SERVICE gRPC retries on UNAVAILABLE (see the module's docstring).
RETRIED_METHODS = (
    "GetBuild",
    "ListBuilds",
    "WatchBuild",
    "Cancel",
    "ListAgents",
    "GetJobLog",
    "FollowJobLog",
    "ListWebhookDeliveries",
)

# Attempts in all, the first one included (gRPC allows at most 5), and the delays
# between them: drawn at random up to 0.1 s, 0.2 s, 0.4 s, 0.8 s (gRPC's own jitter),
# so a failover costs a caller at most about 1.5 s of waiting.
MAX_ATTEMPTS = 5
INITIAL_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 1.0
BACKOFF_MULTIPLIER = 2.0

_SERVICE_CONFIG_OPTION = "grpc.service_config"


def service_config() -> dict[str, Any]:
    """The gRPC service config of every channel: round_robin, and the retry policy."""
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": SERVICE, "method": method} for method in RETRIED_METHODS],
                "retryPolicy": {
                    "maxAttempts": MAX_ATTEMPTS,
                    "initialBackoff": f"{INITIAL_BACKOFF_SECONDS}s",
                    "maxBackoff": f"{MAX_BACKOFF_SECONDS}s",
                    "backoffMultiplier": BACKOFF_MULTIPLIER,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }


def with_load_balancing(options: Sequence[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """`options` with the service config added and retries on, unless the caller gave a
    service config of their own (theirs is used as given)."""
    if any(name == _SERVICE_CONFIG_OPTION for name, _ in options):
        return tuple(options)
    return (
        *options,
        (_SERVICE_CONFIG_OPTION, json.dumps(service_config())),
        ("grpc.enable_retries", 1),
    )


def target_addresses(target: str) -> list[str]:
    """The `host:port` addresses a target names (a `dns:` target: the name itself)."""
    scheme, separator, rest = target.partition(":")
    if separator and scheme in ("ipv4", "ipv6"):
        return [address for address in rest.split(",") if address]
    if separator and scheme == "dns":
        # dns:host:port, dns:///host:port, dns://resolver/host:port
        return [rest.removeprefix("//").partition("/")[2] if rest.startswith("//") else rest]
    return [target]


_LOOPBACK_HOSTS = ("127.", "localhost:", "[::1]:", "unix:")


def is_loopback(target: str) -> bool:
    """Whether every address of `target` is on this machine."""
    if target.startswith("unix"):
        return True
    return all(address.startswith(_LOOPBACK_HOSTS) for address in target_addresses(target))


# The same attempts and delays as the service config's retry policy.
_SUBMIT_RETRIES = BackoffPolicy(
    initial=INITIAL_BACKOFF_SECONDS,
    maximum=MAX_BACKOFF_SECONDS,
    multiplier=BACKOFF_MULTIPLIER,
    jitter=1.0,
)


def _is_unavailable(error: grpc.RpcError) -> bool:
    code = getattr(error, "code", None)
    return callable(code) and code() == grpc.StatusCode.UNAVAILABLE


async def retrying_unavailable(call: Callable[[], Awaitable[T]], retry: bool) -> T:
    """`call()`, tried again on UNAVAILABLE (up to MAX_ATTEMPTS in all) when `retry`."""
    backoff = Backoff(_SUBMIT_RETRIES)
    for _ in range(MAX_ATTEMPTS - 1 if retry else 0):
        try:
            return await call()
        except grpc.RpcError as error:
            if not _is_unavailable(error):
                raise
        await asyncio.sleep(backoff.next_delay())
    return await call()


def retrying_unavailable_blocking(call: Callable[[], T], retry: bool) -> T:
    """retrying_unavailable's twin for the blocking client."""
    backoff = Backoff(_SUBMIT_RETRIES)
    for _ in range(MAX_ATTEMPTS - 1 if retry else 0):
        try:
            return call()
        except grpc.RpcError as error:
            if not _is_unavailable(error):
                raise
        time.sleep(backoff.next_delay())
    return call()
