"""The async and the blocking client are one client called two ways: the same methods
with the same parameters, the same channel settings, and the same warning when a token
would cross the network in plaintext."""

from __future__ import annotations

import inspect
import logging

import pytest
from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.credentials import TlsOptions
from buildcontrol_client.sync_client import SyncBuildControlClient

WARNING = "sending a bearer token to build.example:50051 without TLS"


def public_methods(kind: type) -> dict[str, list[tuple[str, object]]]:
    """name → (parameter, default) of each public method, and of the constructor."""
    found = {}
    for name, member in inspect.getmembers(kind, inspect.isfunction):
        if not name.startswith("_") or name == "__init__":
            parameters = inspect.signature(member).parameters.values()
            found[name] = [(p.name, p.default) for p in parameters]
    return found


def test_both_clients_have_the_same_methods_and_parameters() -> None:
    asynchronous = public_methods(BuildControlClient)
    blocking = public_methods(SyncBuildControlClient)
    # The blocking client's one extra: a channel of the caller's (grpc_testing's).
    assert blocking.pop("__init__")[-1][0] == "channel"
    asynchronous.pop("__init__")
    assert (
        inspect.signature(SyncBuildControlClient.__init__).parameters.keys() - {"channel"}
        == inspect.signature(BuildControlClient.__init__).parameters.keys()
    )
    for context in ("__aenter__", "__aexit__", "__enter__", "__exit__"):
        asynchronous.pop(context, None)
        blocking.pop(context, None)
    assert blocking == asynchronous


def test_the_blocking_client_warns_of_a_token_in_plaintext(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "buildcontrol.client"):
        SyncBuildControlClient("build.example:50051", token="t0ken").close()
    assert [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]


async def test_the_async_client_warns_of_a_token_in_plaintext(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "buildcontrol.client"):
        async with BuildControlClient("build.example:50051", token="t0ken"):
            pass
    assert [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]


@pytest.mark.parametrize(
    ("target", "token", "tls"),
    [
        ("127.0.0.1:50051", "t0ken", None),  # loopback
        ("build.example:50051", None, None),  # no token to leak
        ("build.example:50051", "t0ken", TlsOptions()),  # TLS
    ],
)
def test_no_warning_where_no_token_is_exposed(
    caplog: pytest.LogCaptureFixture, target: str, token: str | None, tls: TlsOptions | None
) -> None:
    with caplog.at_level(logging.WARNING, "buildcontrol.client"):
        SyncBuildControlClient(target, token=token, tls=tls).close()
    assert not [r for r in caplog.records if "without TLS" in r.getMessage()]
