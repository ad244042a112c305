"""The settings of retention: defaults, 0 days as "for ever", from a flag or a
variable, and refusals of what is not a policy (exit 2 naming the source)."""

from __future__ import annotations

import pytest
from buildcontrol_cli.main import build_parser
from buildcontrol_server.config import Settings
from buildcontrol_server.config_sources import settings_of
from buildcontrol_server.domain.retention import RetentionPolicy


def settings(*argv: str, environ: dict[str, str] | None = None) -> Settings:
    return settings_of(build_parser().parse_args(["serve", *argv]), environ or {})


def test_the_defaults_keep_builds_90_days_and_audit_a_year() -> None:
    assert settings().retention_policy == RetentionPolicy(
        builds_days=90, builds_max=None, audit_days=365, deliveries_days=30
    )
    assert settings().housekeeping_interval == 300


def test_zero_days_keeps_for_ever_and_a_cap_counts_builds() -> None:
    chosen = settings(
        "--retain-builds-days",
        "0",
        "--retain-builds-max",
        "5000",
        environ={"BUILDCONTROL_RETAIN_AUDIT_DAYS": "0"},
    )
    assert chosen.retention_policy == RetentionPolicy(
        builds_days=None, builds_max=5000, audit_days=None, deliveries_days=30
    )


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--retain-builds-days", "-1"], "--retain-builds-days"),
        (["--retain-audit-days", "a year"], "--retain-audit-days"),
        (["--retain-builds-max", "0"], "--retain-builds-max"),
        (["--housekeeping-interval", "-5"], "--housekeeping-interval"),
    ],
)
def test_what_is_not_a_policy_is_refused_naming_the_flag(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        settings(*argv)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err
