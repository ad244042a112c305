"""The examples at the end of `buildcontrol --help` work as written on a fresh data dir
with the default authentication (only the address is moved off 50051, through the
BUILDCONTROL_* variables every flag reads)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from buildcontrol_cli.main import EXAMPLES

from tests.support.ports import free_port
from tests.support.processes import BUILDCONTROL

ROOT = Path(__file__).resolve().parents[2]


def example_lines() -> list[str]:
    lines = EXAMPLES.split("examples", 1)[1].split("exit codes:", 1)[0].splitlines()[1:]
    return [line.split("  #", 1)[0].strip() for line in lines if line.strip()]


def test_the_help_examples_run_a_cancel_end_to_end(tmp_path: Path) -> None:
    serve, agent, *client = example_lines()
    assert serve.startswith("buildcontrol serve") and agent.startswith("buildcontrol agent")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    port = free_port()
    bin_dir = Path(BUILDCONTROL[0]).parent
    script = "\n".join(
        [
            "set -euo pipefail",
            f"export PATH={bin_dir}:$PATH",
            f"export BUILDCONTROL_LISTEN=127.0.0.1:{port} BUILDCONTROL_METRICS_PORT=0",
            f"export BUILDCONTROL_SERVER=127.0.0.1:{port}",
            # Each process's output on a descriptor: `read` waits for the line that says
            # it is ready, no polling.
            f"exec 3< <(exec {serve} 2> serve.err)",
            "server=$!",
            "read -r -t 60 ready <&3",
            f"exec 4< <(exec {agent} 2>&1)",
            "agent=$!",
            "trap 'kill $agent $server 2>/dev/null; wait' EXIT",
            "while read -r -t 60 line <&4; do [[ $line == *connected\\ to* ]] && break; done",
            "cat <&4 > agent.err &",
            *client,
        ]
    )
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("BUILDCONTROL_")},
    )  # fmt: skip
    logs = "".join(
        f"\n--- {name}\n{(tmp_path / name).read_text()}"
        for name in ("serve.err", "agent.err")
        if (tmp_path / name).exists()
    )
    assert done.returncode == 0, done.stdout + done.stderr + logs
    assert "finished" in done.stdout and "CANCELED" in done.stdout, done.stdout
    # The agent (authenticated by the bootstrap token) had the job and stopped it.
    assert "job-stopped" in done.stdout, done.stdout
