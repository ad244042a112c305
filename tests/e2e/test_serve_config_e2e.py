"""`buildcontrol serve` takes each setting from its flag, its BUILDCONTROL_* variable or
its key in a `--config` TOML file, and refuses a bad value from any of them with one
line naming where it came from, the value and the rule: exit code 2, nothing made."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from tests.support.processes import BUILDCONTROL, serve

SECONDS_RULE = "is not a number of seconds >= 0"


async def serve_refused(data_dir: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    """The one stderr line of a serve that must refuse its settings (exit code 2)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BUILDCONTROL_")}
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
        "--metrics-port", "-1", *flags,
        env={**environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2, (out, err)
    assert out == b""
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert not await asyncio.to_thread(data_dir.exists)  # refused before anything was made
    return lines[0]


async def test_a_negative_stop_ack_timeout_flag_is_refused(tmp_path: Path) -> None:
    line = await serve_refused(tmp_path / "data", "--stop-ack-timeout", "-1")
    assert line == f"buildcontrol serve: --stop-ack-timeout='-1' {SECONDS_RULE}"


async def test_a_bad_variable_is_refused_naming_the_variable(tmp_path: Path) -> None:
    line = await serve_refused(tmp_path / "data", env={"BUILDCONTROL_STOP_ACK_TIMEOUT": "-1"})
    assert line == f"buildcontrol serve: BUILDCONTROL_STOP_ACK_TIMEOUT='-1' {SECONDS_RULE}"


async def test_a_bad_file_key_is_refused_naming_the_file_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("stop-ack-timeout = -1\n")
    line = await serve_refused(tmp_path / "data", "--config", str(config))
    assert line == f"buildcontrol serve: {config}: stop-ack-timeout='-1' {SECONDS_RULE}"


async def test_an_unknown_file_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("stop-ack-timout = 1\n")
    line = await serve_refused(tmp_path / "data", env={"BUILDCONTROL_CONFIG": str(config)})
    assert line == (
        f"buildcontrol serve: {config}: stop-ack-timout=1 is not a known key"
        " (the flags of serve without --)"
    )


async def test_a_config_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("stop-ack-timeout = = 1\n")
    line = await serve_refused(tmp_path / "data", "--config", str(config))
    assert line.startswith(f"buildcontrol serve: --config='{config}' is not a TOML file (")


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [
        ("--listen", "nowhere", "is not HOST:PORT with a port 0..65535"),
        ("--metrics-port", "70000", "is not an integer -1..65535"),
        ("--max-jobs", "0", "is not an integer >= 1"),
        ("--job-timeout", "0", "is not a number of seconds > 0"),
        ("--webhook-url", "ftp://x", "is not an http:// or https:// URL with a host"),
        ("--log-format", "xml", "is not one of text, json"),
    ],
)
async def test_every_kind_of_rule_refuses_with_its_words(
    tmp_path: Path, flag: str, value: str, rule: str
) -> None:
    line = await serve_refused(tmp_path / "data", flag, value)
    assert line.startswith(f"buildcontrol serve: {flag}={value!r} {rule}")


async def test_a_bad_store_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    line = await serve_refused(
        tmp_path / "data", env={"BUILDCONTROL_STORE": "mysql://u:s3cret@h/db"}
    )
    assert line.startswith("buildcontrol serve: BUILDCONTROL_STORE=(not shown) is not a store URL")
    assert "s3cret" not in line


async def test_the_server_runs_with_the_settings_of_its_config_file(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('log-format = "json"\n')
    async with serve(tmp_path / "data", "--auth", "on", "--config", str(config)) as server:
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), 20) == 0
    # Every line, the first start's banner too, is a JSON object: the file was read.
    records = [json.loads(line) for line in server.log.read_text().splitlines()]
    assert [r for r in records if r["logger"] == "buildcontrol.bootstrap"]
