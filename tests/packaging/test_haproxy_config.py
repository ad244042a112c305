"""deploy/haproxy.cfg: HAProxy accepts it as shipped and as the tests run it (their own
port and servers), and what makes gRPC work through it is in it: HTTP/2 on both sides
and stream timeouts far above the agent's heartbeat."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.haproxy import CONFIG, HOW_TO_GET, find_haproxy, render_config


def haproxy_accepts(config: str, tmp_path: Path) -> None:
    executable = find_haproxy()
    if executable is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must check the HAProxy configuration: {HOW_TO_GET}")
        pytest.skip(HOW_TO_GET)
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    done = subprocess.run(
        [executable, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_haproxy_accepts_the_shipped_configuration(tmp_path: Path) -> None:
    haproxy_accepts(CONFIG.read_text(), tmp_path)


def test_haproxy_accepts_the_configuration_as_the_tests_run_it(tmp_path: Path) -> None:
    rendered = render_config(CONFIG.read_text(), 40001, ["127.0.0.1:40002", "127.0.0.1:40003"])
    haproxy_accepts(rendered, tmp_path)
    assert re.findall(r"^\s*bind (.*)$", rendered, re.MULTILINE) == ["127.0.0.1:40001 proto h2"]
    assert re.findall(r"^\s*server (.*)$", rendered, re.MULTILINE) == [
        "server-1 127.0.0.1:40002 proto h2",
        "server-2 127.0.0.1:40003 proto h2",
    ]


def test_grpc_goes_through_as_http2_on_both_sides_with_long_stream_timeouts() -> None:
    config = CONFIG.read_text()
    assert re.search(r"^\s*mode http$", config, re.MULTILINE)
    timeouts = dict(re.findall(r"^\s*timeout (\S+) (\S+)$", config, re.MULTILINE))
    # The agent's heartbeat is 10 s and its jobs may be silent for long: an hour.
    assert {timeouts[name] for name in ("client", "server", "tunnel")} == {"1h"}


def test_a_test_may_shorten_a_timeout_but_not_invent_one() -> None:
    rendered = render_config(CONFIG.read_text(), 1, ["127.0.0.1:2"], {"server": "5s"})
    assert re.search(r"^\s*timeout server 5s$", rendered, re.MULTILINE)
    with pytest.raises(ValueError, match="no `timeout nonsense` line"):
        render_config(CONFIG.read_text(), 1, ["127.0.0.1:2"], {"nonsense": "5s"})
