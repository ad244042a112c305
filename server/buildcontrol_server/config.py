"""Server settings with their defaults (the CLI's `serve` flags fill them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from buildcontrol_server.domain.cancellation import StopTimes


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    listen: str = "127.0.0.1:50051"
    # 0 picks a free port; the chosen one is printed at start.
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    # Grace between SIGTERM and SIGKILL when a cancel gives none.
    default_grace_period: float = 10.0
    # Time an agent has, after the grace period, to confirm a stop before the server
    # finalizes the job as FORCED.
    stop_ack_timeout: float = 5.0
    # Longest the cleanup (run_on_cancel) steps of a job, or one cleanup job, may run.
    cleanup_timeout: float = 60.0
    # Longest a job may run when its pipeline gives no timeout; then the build is
    # cancelled with reason "timeout".
    job_timeout: float = 3600.0
    # Longest a build may wait QUEUED for an agent; then it is cancelled with reason
    # "queue timeout".
    queue_timeout: float = 24 * 3600.0
    # How long jobs of a disconnected agent wait for it to come back.
    reconnect_window: float = 30.0
    heartbeat_interval: float = 10.0
    # Bound of SIGTERM drain: agents are told to leave, in-flight RPCs get this long.
    shutdown_grace: float = 5.0

    @property
    def stop_times(self) -> StopTimes:
        return StopTimes(ack_timeout=self.stop_ack_timeout, cleanup_timeout=self.cleanup_timeout)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "buildcontrol.sqlite3"
