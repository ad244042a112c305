"""deploy/: the Dockerfile, the compose file and the systemd units run commands and
flags that the real `buildcontrol` parser accepts, and the agent unit's KillMode is the
one that never leaves step processes behind a restart."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest
import yaml
from buildcontrol_cli.main import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep case
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    parser.read_string(text)
    return parser


def parses(argv: list[str]) -> None:
    """The argv after the program name parses (argparse exits 2 on a bad flag)."""
    build_parser().parse_args([a.replace("%H", "host-1") for a in argv])


@pytest.mark.parametrize("name", ["buildcontrol-server.service", "buildcontrol-agent.service"])
def test_systemd_unit_runs_a_command_the_cli_accepts(name: str) -> None:
    exec_start = shlex.split(unit(name)["Service"]["ExecStart"])
    assert Path(exec_start[0]).name == "buildcontrol"
    parses(exec_start[1:])


def test_agent_unit_kills_what_the_agent_leaves_on_stop() -> None:
    service = unit("buildcontrol-agent.service")["Service"]
    # mixed: SIGTERM to the agent alone (it stops and reports its jobs), then SIGKILL
    # to everything left in the unit's cgroup, setsid escapes included.
    assert service["KillMode"] == "mixed"
    assert float(service["TimeoutStopSec"]) > 0


def test_compose_commands_are_accepted_by_the_cli() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"server", "agent-1", "agent-2"} <= services.keys()
    for service in services.values():
        parses(service["command"])


def test_dockerfile_runs_as_a_non_root_user_with_a_health_check_the_cli_accepts() -> None:
    lines = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    instructions = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    by_name: dict[str, list[str]] = {}
    for name, rest in instructions:
        by_name.setdefault(name, []).append(rest)
    assert len(by_name["FROM"]) >= 2, "multi-stage"
    user = by_name["USER"][-1]
    assert not user.startswith(("0", "root")), user
    assert by_name["VOLUME"]
    health = by_name["HEALTHCHECK"][-1]
    command = yaml.safe_load(health.split("CMD", 1)[1])  # the JSON array form
    assert command[:2] == ["buildcontrol", "health"]
    parses(command[1:])
    assert yaml.safe_load(by_name["ENTRYPOINT"][-1]) == ["buildcontrol"]
    parses(yaml.safe_load(by_name["CMD"][-1]))
