"""The server's settings come from one declaration (config.py): a flag wins over its
variable, which wins over the config file, which wins over the default; repeatable
options take a comma list or a TOML array; the flags, variables and file keys are all
made from the declaration."""

from __future__ import annotations

from pathlib import Path

import pytest
from buildcontrol_cli.main import build_parser
from buildcontrol_server.config import Settings
from buildcontrol_server.config_sources import options, settings_of


def settings(argv: list[str], environ: dict[str, str]) -> Settings:
    return settings_of(build_parser().parse_args(["serve", *argv]), environ)


def test_flag_beats_variable_beats_file_beats_default(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("stop-ack-timeout = 3\nreconnect-window = 4\naudit-batch = 7\n")
    env = {"BUILDCONTROL_CONFIG": str(config), "BUILDCONTROL_STOP_ACK_TIMEOUT": "2"}
    env["BUILDCONTROL_RECONNECT_WINDOW"] = "5"
    chosen = settings(["--stop-ack-timeout", "1"], env)
    assert chosen.stop_ack_timeout == 1.0  # flag
    assert chosen.reconnect_window == 5.0  # variable over file
    assert chosen.audit_batch == 7  # file
    assert chosen.cleanup_timeout == Settings().cleanup_timeout  # default


def test_config_flag_beats_config_variable(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("audit-batch = 1\n")
    (tmp_path / "b.toml").write_text("audit-batch = 2\n")
    env = {"BUILDCONTROL_CONFIG": str(tmp_path / "a.toml")}
    assert settings(["--config", str(tmp_path / "b.toml")], env).audit_batch == 2


def test_repeatable_options_from_each_source(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('webhook-url = ["http://a.example/x", "https://b.example"]\n')
    from_file = settings(["--config", str(config)], {})
    assert from_file.webhook_urls == ("http://a.example/x", "https://b.example")
    env = {"BUILDCONTROL_RESTRICTED_PIPELINE": "release-*, deploy"}
    assert settings([], env).security.restricted_pipelines == ("release-*", "deploy")
    flags = ["--restricted-pipeline", "a", "--restricted-pipeline", "b"]
    assert settings(flags, env).security.restricted_pipelines == ("a", "b")


def test_grouped_and_spread_options_land_in_their_fields(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('auth = false\nmax-jobs = 3\ntls-cert = "c.pem"\ntls-key = "k.pem"\n')
    chosen = settings(["--config", str(config), "--metrics-listen", "0.0.0.0:9999"], {})
    assert chosen.security.auth is False
    assert chosen.limits.max_jobs == 3
    assert chosen.security.tls is not None
    assert (chosen.security.tls.cert, chosen.security.tls.key) == (Path("c.pem"), Path("k.pem"))
    assert (chosen.metrics_host, chosen.metrics_port) == ("0.0.0.0", 9999)


def test_nothing_given_is_the_defaults() -> None:
    assert settings([], {}) == Settings()


def test_an_empty_variable_counts_as_unset() -> None:
    assert settings([], {"BUILDCONTROL_STORE": ""}).store_url is None


def test_flags_variables_and_keys_are_unique_and_named_after_the_flag() -> None:
    declared = options()
    flags = [item.flag for item in declared]
    assert len(set(flags)) == len(flags)
    for item in declared:
        assert item.variable == "BUILDCONTROL_" + item.flag[2:].upper().replace("-", "_")
        assert item.key == item.flag[2:]


@pytest.mark.parametrize(
    "variable",
    ["BUILDCONTROL_STOP_ACK_TIMEOUT", "BUILDCONTROL_DEFAULT_GRACE", "BUILDCONTROL_WEBHOOK_URL"],
)
def test_todays_variable_names_still_work(variable: str) -> None:
    value = "http://hooks.example/x" if variable.endswith("URL") else "7"
    chosen = settings([], {variable: value})
    assert chosen != Settings()
