"""The pure parts of the security layer: which agent ids a certificate names, the
rate-limited warning, job-token verification."""

from __future__ import annotations

import logging

import pytest
from buildcontrol_server.security.certificate_identity import agent_ids
from buildcontrol_server.security.header_check import RateLimitedWarning, non_ascii_header
from buildcontrol_server.security.job_tokens import JobTokens
from buildcontrol_server.security.principals import JobScope

BUILD = "b" + "0" * 20
JOB = BUILD + "-j0"


def test_a_san_uri_naming_an_agent_wins_over_the_common_name() -> None:
    context = {
        "x509_common_name": [b"agent-a"],
        "peer_uri": [b"urn:other:thing", b"spiffe://ci.example.org/agent/agent-b"],
    }
    assert agent_ids(context) == ("agent-b",)


def test_without_an_agent_uri_the_common_name_is_the_agent_id() -> None:
    assert agent_ids({"x509_common_name": [b"agent-a"], "peer_uri": [b"urn:x"]}) == ("agent-a",)
    assert agent_ids({}) == ()


def test_a_job_token_verifies_only_under_its_key_and_for_its_job() -> None:
    tokens, other_key = JobTokens(b"k" * 32), JobTokens(b"o" * 32)
    token = tokens.mint(BUILD, JOB)
    assert tokens.verify(token) == JobScope(BUILD, JOB)
    assert other_key.verify(token) is None
    assert tokens.verify(token + "x") is None
    # A job id that is not of the build named beside it.
    assert tokens.verify(tokens.mint(BUILD, "b" + "1" * 20 + "-j0")) is None


def test_the_warning_is_written_once_per_interval_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    warning = RateLimitedWarning(60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="buildcontrol.audit.headers"):
        for _ in range(20):
            warning.occurred()
        now[0] = 61.0
        warning.occurred()
    counts = [record.args[0] for record in caplog.records]  # type: ignore[index]
    assert counts == [1, 20]


@pytest.mark.parametrize(
    ("metadata", "refused"),
    [
        ((("authorization", "Bearer abc"), ("user-agent", "grpc-python/1.85")), None),
        ((("x-note", "caf\u00e9"),), "x-note"),
        ((("x-note", "line\nbreak"),), "x-note"),
        ((("trace-bin", b"\xff\x00"),), None),
    ],
)
def test_header_values_must_be_printable_ascii_except_binary_ones(
    metadata: tuple[tuple[str, object], ...], refused: str | None
) -> None:
    assert non_ascii_header(metadata) == refused
