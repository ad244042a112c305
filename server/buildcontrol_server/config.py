"""Server settings with their defaults (the CLI's `serve` flags fill them)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from buildcontrol_server.domain.cancellation import StopTimes
from buildcontrol_server.domain.deliveries import Endpoint, endpoints_of
from buildcontrol_server.domain.submission import DEFAULT_LIMITS, Limits
from buildcontrol_server.security.settings import DEFAULT_SECURITY, SecuritySettings


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    # Where builds are stored: None for SQLite under data_dir, or a postgresql:// URL
    # (store/factory.py).
    store_url: str | None = None
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
    # Seconds between rounds of the invariant auditor (which also refreshes the
    # stuck-cancel gauges from the store); 0 turns the rounds off.
    audit_interval: float = 5.0
    # Webhooks told of every finished cancel (durable outbox, delivered at least once).
    webhook_urls: tuple[str, ...] = ()
    webhook_max_attempts: int = 5
    # First retry delay; doubles per attempt (with full jitter) up to 10 s.
    webhook_base_delay: float = 0.2
    webhook_request_timeout: float = 5.0
    webhook_breaker_threshold: int = 5
    webhook_breaker_cooldown: float = 30.0
    webhook_queue_size: int = 10_000
    # Audit records written per transaction.
    audit_batch: int = 500
    # Bound of the audit and webhook flush at shutdown (on top of shutdown_grace).
    effects_stop_timeout: float = 2.0
    # Bound of SIGTERM drain: agents are told to leave, in-flight RPCs get this long.
    shutdown_grace: float = 5.0
    # ---- step logs (docs/logs.md) ----
    # Bytes of step output kept per job; the agent drops the rest and says how much.
    log_limit_bytes: int = 64 * 1024 * 1024
    # Days a job's log is kept after its last write; 0 keeps logs forever.
    log_retention_days: float = 30.0
    # ---- security and limits ----
    security: SecuritySettings = DEFAULT_SECURITY
    # What one submitted build (or cancel reason, or agent Hello) may carry.
    limits: Limits = DEFAULT_LIMITS
    # Largest message the server accepts (grpc answers RESOURCE_EXHAUSTED past it).
    max_message_bytes: int = 4 * 1024 * 1024
    # An agent stream whose first message is not a Hello by then is ended.
    hello_timeout: float = 5.0
    # Open AgentService.Connect streams (Hello or not yet); past it RESOURCE_EXHAUSTED.
    # Above any real fleet: it bounds what a flood of connections can hold.
    max_agent_streams: int = 2_000
    # ---- fair limits: what one principal may hold (security/fair_limits.py) ----
    # Open WatchBuild streams of one principal.
    max_watch_streams_per_principal: int = 1_000
    # Live (not terminal) builds submitted by one principal.
    max_live_builds_per_principal: int = 10_000
    # Open AgentService.Connect streams of one agent token (one agent holds one, two
    # for a moment while it reconnects).
    max_agent_streams_per_token: int = 8
    # A Hello may claim at most capacity x this many running jobs; more is refused.
    hello_running_jobs_factor: int = 4
    # Largest capacity a Hello may claim.
    max_agent_capacity: int = 1_024
    # HTTP/2 streams (calls) open at once on one connection (grpc.max_concurrent_streams);
    # a client past it waits for one of its calls to end.
    max_streams_per_connection: int = 1_000

    @property
    def stop_times(self) -> StopTimes:
        return StopTimes(ack_timeout=self.stop_ack_timeout, cleanup_timeout=self.cleanup_timeout)

    @cached_property
    def webhook_endpoints(self) -> tuple[Endpoint, ...]:
        """The webhook URLs as the outbox keys them (computed once, not per cancel)."""
        return endpoints_of(self.webhook_urls)

    @property
    def log_dir(self) -> Path:
        """Where the SQLite backend keeps job logs (when store_url is None)."""
        return self.data_dir / "logs"

    @property
    def database_path(self) -> Path:
        """SQLite's file (when store_url is None)."""
        return self.data_dir / "buildcontrol.sqlite3"
