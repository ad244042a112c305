"""The channel options for several servers behind one address: round_robin, retries of
UNAVAILABLE for the idempotent calls only, a caller's own service config kept, and the
plaintext-token warning judged on every address of a target."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from buildcontrol_client.errors import Unavailable, error_from_rpc
from buildcontrol_client.load_balancing import (
    MAX_ATTEMPTS,
    RETRIED_METHODS,
    SERVICE,
    is_loopback,
    retrying_unavailable,
    retrying_unavailable_blocking,
    service_config,
    target_addresses,
    with_load_balancing,
)
from buildcontrol_client.sync_client import SyncBuildControlClient
from buildcontrol_proto.message_limits import with_receive_limit
from buildcontrol_proto.v1 import build_control_pb2


def config_of(options: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    found = dict(options)
    loaded: dict[str, Any] = json.loads(found["grpc.service_config"])
    return loaded


def test_every_channel_balances_round_robin_with_retries_on() -> None:
    options = with_load_balancing(())
    assert dict(options)["grpc.enable_retries"] == 1
    assert config_of(options)["loadBalancingConfig"] == [{"round_robin": {}}]


def test_only_idempotent_calls_are_retried_and_only_on_unavailable() -> None:
    (method_config,) = config_of(with_load_balancing(()))["methodConfig"]
    retried = {(name["service"], name["method"]) for name in method_config["name"]}
    assert retried == {
        (SERVICE, method)
        for method in (
            "GetBuild",
            "ListBuilds",
            "WatchBuild",
            "Cancel",
            "ListAgents",
            "GetJobLog",
            "FollowJobLog",
            "ListWebhookDeliveries",
        )
    }
    policy = method_config["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    # gRPC refuses a service config asking for more than 5 attempts.
    assert 2 <= policy["maxAttempts"] == MAX_ATTEMPTS <= 5


def test_calls_that_could_do_something_twice_are_never_retried_by_grpc() -> None:
    service = build_control_pb2.DESCRIPTOR.services_by_name["BuildControl"]
    assert service.full_name == SERVICE
    methods = {method.name for method in service.methods}
    assert set(RETRIED_METHODS) <= methods, "every retried method exists"
    never = methods - set(RETRIED_METHODS)
    assert never == {"SubmitBuild", "CancelBuilds", "RedeliverWebhook"}


def test_a_callers_own_service_config_is_used_as_given() -> None:
    theirs = (("grpc.service_config", '{"loadBalancingConfig": [{"pick_first": {}}]}'),)
    assert with_load_balancing(theirs) == theirs


def test_the_callers_other_options_and_the_receive_limit_are_kept() -> None:
    options = with_load_balancing(with_receive_limit((("grpc.keepalive_time_ms", 30000),)))
    found = dict(options)
    assert found["grpc.keepalive_time_ms"] == 30000
    assert found["grpc.max_receive_message_length"] == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("target", "addresses"),
    [
        ("127.0.0.1:50051", ["127.0.0.1:50051"]),
        ("ipv4:10.0.0.1:50051,10.0.0.2:50051", ["10.0.0.1:50051", "10.0.0.2:50051"]),
        ("ipv6:[::1]:50051,[::1]:50052", ["[::1]:50051", "[::1]:50052"]),
        ("dns:///build.example:50051", ["build.example:50051"]),
        ("dns://10.0.0.53/build.example:50051", ["build.example:50051"]),
        ("dns:build.example:50051", ["build.example:50051"]),
        ("build.example:50051", ["build.example:50051"]),
    ],
)
def test_the_addresses_of_a_target_are_read_from_every_form(
    target: str, addresses: list[str]
) -> None:
    assert target_addresses(target) == addresses


@pytest.mark.parametrize(
    ("target", "loopback"),
    [
        ("ipv4:127.0.0.1:5001,127.0.0.1:5002", True),
        ("dns:///localhost:50051", True),
        ("unix:///run/buildcontrol.sock", True),
        ("ipv4:127.0.0.1:5001,10.0.0.2:5002", False),
        ("dns:///build.example:50051", False),
    ],
)
def test_a_target_is_loopback_only_when_every_address_is(target: str, loopback: bool) -> None:
    assert is_loopback(target) is loopback


def test_a_token_to_several_servers_warns_when_one_is_off_this_machine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "buildcontrol.client"):
        SyncBuildControlClient("ipv4:127.0.0.1:5001,127.0.0.1:5002", token="t0ken").close()
        assert not [r for r in caplog.records if "without TLS" in r.getMessage()]
        SyncBuildControlClient("ipv4:127.0.0.1:5001,10.0.0.2:5002", token="t0ken").close()
    assert [r for r in caplog.records if "without TLS" in r.getMessage()]


def failure(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "injected")


class Answers:
    """A call that fails with the given codes, one per attempt, then returns "done"."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self._codes = list(codes)
        self.attempts = 0

    def __call__(self) -> str:
        self.attempts += 1
        if self._codes:
            raise failure(self._codes.pop(0))
        return "done"

    async def awaited(self) -> str:
        return self()


async def test_a_keyed_submit_is_tried_again_after_unavailable() -> None:
    answers = Answers(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    assert await retrying_unavailable(answers.awaited, retry=True) == "done"
    assert answers.attempts == 3


async def test_a_submit_without_a_key_is_tried_once() -> None:
    answers = Answers(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await retrying_unavailable(answers.awaited, retry=False)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert answers.attempts == 1


async def test_an_error_other_than_unavailable_is_not_retried() -> None:
    answers = Answers(grpc.StatusCode.INVALID_ARGUMENT)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await retrying_unavailable(answers.awaited, retry=True)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert answers.attempts == 1


def test_the_blocking_retry_gives_up_after_the_last_attempt() -> None:
    answers = Answers(*[grpc.StatusCode.UNAVAILABLE] * MAX_ATTEMPTS)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        retrying_unavailable_blocking(answers, retry=True)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert answers.attempts == MAX_ATTEMPTS


NODE_MODULE = Path(__file__).resolve().parents[2] / "clients/node/src/load-balancing.js"


def test_the_node_client_balances_and_retries_the_same_way() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH")
    script = (
        f"import({json.dumps(NODE_MODULE.as_uri())})"
        ".then((m) => process.stdout.write(JSON.stringify(m.serviceConfig())))"
    )
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == service_config()


def test_a_stream_a_proxy_ended_without_a_status_is_the_server_being_unavailable() -> None:
    # What grpc reports when HAProxy ends a stream whose server died.
    ended = grpc.aio.AioRpcError(
        grpc.StatusCode.UNKNOWN,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        "Stream removed (Data frame with END_STREAM flag received)",
    )
    assert isinstance(error_from_rpc(ended), Unavailable)
    assert not isinstance(error_from_rpc(failure(grpc.StatusCode.UNKNOWN)), Unavailable)
