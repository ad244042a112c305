"""Every flag also comes from a BUILDCONTROL_* variable (the command line wins), a bad
value names its variable, `completion` prints scripts from the real parser, and a
mistyped command gets a suggestion."""

from __future__ import annotations

import subprocess

import pytest
from buildcontrol_cli.environment import apply_environment
from buildcontrol_cli.main import build_parser, main
from buildcontrol_server.config_sources import settings_of

from tests.support.processes import BUILDCONTROL


def parsed(argv: list[str], environ: dict[str, str]) -> object:
    parser = build_parser()
    apply_environment(parser, argv, environ)
    return parser.parse_args(argv)


def test_flags_come_from_the_environment_and_the_command_line_wins() -> None:
    env = {"BUILDCONTROL_GRACE": "1m30s", "BUILDCONTROL_FORCE": "true"}
    args = parsed(["cancel", "b1"], env)
    assert (args.grace, args.force) == (90.0, True)  # type: ignore[attr-defined]
    args = parsed(["cancel", "b1", "--grace", "5"], env)
    assert args.grace == 5.0  # type: ignore[attr-defined]


def test_serve_and_agent_flags_too() -> None:
    env = {"BUILDCONTROL_STOP_ACK_TIMEOUT": "7", "BUILDCONTROL_LABELS": "os=linux,arch=arm64"}
    assert settings_of(parsed(["serve"], env), env).stop_ack_timeout == 7.0  # type: ignore[arg-type]
    labels = parsed(["agent"], env).labels  # type: ignore[attr-defined]
    assert labels == [{"os": "linux"}, {"arch": "arm64"}]


def test_a_bad_value_is_a_usage_error_naming_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        parsed(["watch", "b1"], {"BUILDCONTROL_RECONNECT_FOR": "soon"})
    assert exited.value.code == 2
    assert "BUILDCONTROL_RECONNECT_FOR='soon'" in capsys.readouterr().err


def test_a_variable_of_another_command_is_ignored() -> None:
    # --grace belongs to cancel; a bad BUILDCONTROL_GRACE must not break `watch`.
    assert parsed(["watch", "b1"], {"BUILDCONTROL_GRACE": "soon"}).build_id == "b1"  # type: ignore[attr-defined]


def test_a_mistyped_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["cancle", "b1"])
    assert exited.value.code == 2
    assert "unknown command 'cancle'; did you mean 'cancel'?" in capsys.readouterr().err


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_know_every_command(shell: str) -> None:
    script = subprocess.run(
        [*BUILDCONTROL, "completion", shell], capture_output=True, text=True, timeout=60
    )
    assert script.returncode == 0, script.stderr
    for command in ("serve", "agent", "submit", "cancel", "cancel-builds", "health"):
        assert command in script.stdout
    assert "--reconnect-for" in script.stdout
