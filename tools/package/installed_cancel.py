"""A cancel end to end with an installed `buildcontrol` (no checkout on sys.path):
server, agent and client are the installed command; a real step is stopped.

    python installed_cancel.py /path/to/venv/bin/buildcontrol PIPELINE.yaml

Exit 0 when the build ends CANCELED and its step process is gone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY = re.compile(r"serving gRPC on (\S+),")


def wait_for(predicate: object, what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()  # type: ignore[operator]
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    command, pipeline = sys.argv[1], Path(sys.argv[2]).resolve()
    work = Path(tempfile.mkdtemp(prefix="bc-installed-"))
    server = subprocess.Popen(
        [
            command,
            "serve",
            "--auth",
            "off",
            "--data-dir",
            str(work / "data"),
            "--listen",
            "127.0.0.1:0",
            "--metrics-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=work,
    )
    agent = None
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = READY.search(line)
        if match is None:
            raise SystemExit(f"server did not become ready: {line!r}")
        address = match.group(1)
        env = {**os.environ, "BUILDCONTROL_TOKEN": ""}
        agent = subprocess.Popen(
            [
                command,
                "agent",
                "--server",
                address,
                "--agent-id",
                "installed-1",
                "--work-dir",
                str(work / "agent"),
            ],
            cwd=work,
            env=env,
        )
        client = [command]
        submitted = subprocess.run(
            [*client, "submit", "--server", address, "--json", str(pipeline)],
            check=True,
            capture_output=True,
            text=True,
            cwd=work,
            env=env,
        )
        build_id = json.loads(submitted.stdout.splitlines()[0])["buildId"]

        def running() -> bool:
            shown = subprocess.run(
                [*client, "get", "--server", address, "--json", build_id],
                capture_output=True,
                text=True,
                cwd=work,
                env=env,
            )
            return '"JOB_STATUS_RUNNING"' in shown.stdout

        wait_for(running, "the job to run")
        canceled = subprocess.run(
            [
                *client,
                "cancel",
                "--server",
                address,
                build_id,
                "--reason",
                "package check",
                "--grace",
                "1",
            ],
            capture_output=True,
            text=True,
            cwd=work,
            env=env,
            timeout=60,
        )
        print(canceled.stdout, end="")
        if canceled.returncode != 0:  # cancel exits 0 once the build is CANCELED (docs/cli.md)
            print(canceled.stderr, file=sys.stderr)
            raise SystemExit(f"cancel exited {canceled.returncode}, expected 0 (CANCELED)")
        print(f"installed buildcontrol: build {build_id} CANCELED end to end")
        return 0
    finally:
        for process in (agent, server):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    sys.exit(main())
