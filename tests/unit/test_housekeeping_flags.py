"""The serve flags of retention: defaults, 0 days as "for ever", and refusals of what
is not a policy (exit 2 with the flag named, before the server starts)."""

from __future__ import annotations

import pytest
from buildcontrol_server.cli import build_parser
from buildcontrol_server.config import Settings
from buildcontrol_server.domain.retention import RetentionPolicy
from buildcontrol_server.housekeeping import serve_flags


def settings(*argv: str) -> Settings:
    args = build_parser().parse_args(["serve", *argv])
    return Settings(**serve_flags.settings_of(args))


def test_the_defaults_keep_builds_90_days_and_audit_a_year() -> None:
    policy = settings().retention_policy
    assert policy == RetentionPolicy(
        builds_days=90, builds_max=None, audit_days=365, deliveries_days=30
    )
    assert settings().housekeeping_interval == 300


def test_zero_days_keeps_for_ever_and_a_cap_counts_builds() -> None:
    chosen = settings(
        "--retain-builds-days", "0", "--retain-builds-max", "5000", "--retain-audit-days", "0"
    )
    assert chosen.retention_policy == RetentionPolicy(
        builds_days=None, builds_max=5000, audit_days=None, deliveries_days=30
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--retain-builds-days", "-1"], "days cannot be negative"),
        (["--retain-audit-days", "a year"], "is not a number of days"),
        (["--retain-builds-max", "0"], "--retain-builds-max"),
        (["--housekeeping-interval", "-5"], "seconds cannot be negative"),
    ],
)
def test_what_is_not_a_policy_is_refused_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        settings(*argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
