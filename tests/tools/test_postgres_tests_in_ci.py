"""Without PostgreSQL, its tests skip with one line saying how to get it; under CI
(CI=true) they fail instead, so CI never passes by skipping them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.postgres_server import BIN_DIR_ENV

ROOT = Path(__file__).parent.parent.parent
# A test that needs the session's PostgreSQL and nothing else.
NEEDS_POSTGRES = (
    "tests/store/test_store_postgres.py::test_migrations_create_the_schema_and_record_its_version"
)


def run_without_postgres(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env[BIN_DIR_ENV] = str(tmp_path)  # no initdb in it: "no PostgreSQL on this machine"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", NEEDS_POSTGRES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_postgres_tests_skip_with_how_to_get_postgres(tmp_path: Path) -> None:
    done = run_without_postgres(tmp_path, ci=None)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert "`make postgres` (as root) installs the Debian package `postgresql`" in done.stdout


def test_postgres_tests_fail_under_ci_instead_of_skipping(tmp_path: Path) -> None:
    done = run_without_postgres(tmp_path, ci="true")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "CI must run the PostgreSQL tests" in done.stdout
    assert "1 error" in done.stdout and "1 skipped" not in done.stdout
