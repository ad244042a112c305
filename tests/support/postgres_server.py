"""A real PostgreSQL for the test session: initdb into a temp dir, started on
127.0.0.1 and a free port with fsync off, stopped with `-m immediate`, removed.

initdb and pg_ctl refuse to run as root (and CI runs as root): then they run as the
`postgres` user (`runuser -u postgres --`) on a directory that user owns. The binaries
are found under /usr/lib/postgresql/VERSION/bin (Debian keeps them off PATH), or on
PATH. `make postgres` installs the Debian package when they are missing.

Each test gets a fresh schema in one test database
(tests/conftest.py: a schema of its own, in milliseconds).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port

HOW_TO_GET = (
    "PostgreSQL tests skipped: no initdb found; `make postgres` (as root) installs the"
    " Debian package `postgresql`, or put PostgreSQL's bin directory on PATH"
)
START_TIMEOUT = 30
# A directory of PostgreSQL's binaries to use instead of looking for them (one
# without initdb means "no PostgreSQL here": the tests of that case use it).
BIN_DIR_ENV = "BUILDCONTROL_TEST_POSTGRES_BIN"


def find_bin_dir() -> Path | None:
    """$BUILDCONTROL_TEST_POSTGRES_BIN if set, else the newest
    /usr/lib/postgresql/*/bin with initdb, else initdb's dir on PATH."""
    chosen = os.environ.get(BIN_DIR_ENV)
    if chosen is not None:
        return Path(chosen) if (Path(chosen) / "initdb").exists() else None
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: (
            int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bc-pg-")))
    port: int = 0
    user: str = "postgres"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return subprocess.run(
            [*prefix, *command],
            check=True,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            cwd=self.root,
        )

    def init(self) -> None:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        else:
            self.user = os.environ.get("USER") or "postgres"
        self._run(
            str(self.bin_dir / "initdb"),
            "--no-sync",
            "-A",
            "trust",
            "-U",
            self.user,
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-D",
            str(self.data_dir),
        )

    def start(self, fsync: bool = False) -> None:
        """Start (again) on the same port; returns once it accepts connections.

        fsync off (tests): a stop -m immediate is a crash of the server, not of the
        host, so committed data is still in the page cache. synchronous_commit stays
        on: the crash tests count on every commit that returned being there after a
        restart. Benchmarks pass fsync=True, as in production."""
        if not self.port:
            self.port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c fsync={'on' if fsync else 'off'}"
            f" -k {self.root} -c max_connections=300"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            str(START_TIMEOUT),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
        )

    def stop(self, mode: str = "immediate") -> None:
        """`-m immediate`: the way a crash ends it (no shutdown checkpoint)."""
        self._run(str(self.bin_dir / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data_dir))

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = self._run(
            str(self.bin_dir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        )
        return done.stdout.strip()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer | None:
    """A running server, or None when PostgreSQL is not installed."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return None
    server = PostgresServer(bin_dir)
    try:
        server.init()
        server.start()
    except BaseException:
        server.remove()
        raise
    return server


DATABASE = "buildcontrol_tests"
_schemas = itertools.count()


def fresh_database(server: PostgresServer) -> str:
    """The URL of a new, empty schema of its own in the test database.

    A schema, not a database: CREATE DATABASE takes ~2 s on this loaded machine,
    CREATE SCHEMA milliseconds. The URL's search_path puts the store in it, and the
    one-server lock is per schema, so tests never see each other's builds or locks."""
    name = f"test_{next(_schemas)}"
    server.psql(f"CREATE SCHEMA {name}", DATABASE)
    return f"{server.url(DATABASE)}?search_path={name}"
