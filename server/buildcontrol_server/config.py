"""Server settings with their defaults. Each field a person may set is declared here
once, with its flag, help and rule (config_options.py): the `serve` flags, the
BUILDCONTROL_* variables, the config-file keys and docs/operations.md's table come from it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from buildcontrol_server.config_options import Option, group, option
from buildcontrol_server.config_rules import (
    ADDRESS,
    DAYS,
    HOST_PORT_PAIR,
    HTTP_URL,
    PATH,
    STORE_URL,
    choice,
    integer,
    seconds,
)
from buildcontrol_server.domain.cancellation import StopTimes
from buildcontrol_server.domain.deliveries import Endpoint, WebhookEvent, endpoints_of
from buildcontrol_server.domain.notifications import Subscriptions, subscriptions_of
from buildcontrol_server.domain.retention import RetentionPolicy
from buildcontrol_server.domain.submission import DEFAULT_LIMITS, Limits
from buildcontrol_server.effects.webhook_events import EVENT_CHOICE, chosen_events
from buildcontrol_server.effects.webhook_signing import SECRET_SOURCE
from buildcontrol_server.observability.logs import LOG_FORMATS
from buildcontrol_server.security.settings import DEFAULT_SECURITY, SecuritySettings

LOOPS = ("asyncio", "uvloop")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
POSITIVE = integer(1)

# What one submitted build (or cancel reason, or agent Hello) may carry: domain's
# Limits knows nothing of flags, so its options are declared here.
_LIMIT_OPTIONS = {
    "max_stages": Option("stages per build", POSITIVE),
    "max_jobs": Option("jobs per build", POSITIVE),
    "max_steps": Option("steps per build", POSITIVE),
    "max_name_length": Option(
        "characters of a name (pipeline, stage, job, step, group, agent id, label, env name)",
        POSITIVE,
    ),
    "max_command_length": Option("characters of a step's command", POSITIVE),
    "max_env_vars": Option("environment variables per job", POSITIVE),
    "max_env_value_length": Option("characters of an env value", POSITIVE),
    "max_labels": Option("labels per job or agent", POSITIVE),
    "max_reason_length": Option("characters of a cancel reason", POSITIVE),
}


def _metrics_address(pair: tuple[str, int]) -> dict[str, object]:
    return {"metrics_host": pair[0], "metrics_port": pair[1]}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = option(
        Path("data"),
        "directory of the SQLite database (buildcontrol.sqlite3) and the tokens",
        PATH,
    )
    # Where builds are stored: None for SQLite under data_dir, or a postgresql:// URL
    # (store/factory.py). Best given by its variable: a password stays out of `ps`.
    store_url: str | None = option(
        None,
        "postgresql://USER@HOST:PORT/DB to store builds in PostgreSQL; none: SQLite under "
        "--data-dir",
        STORE_URL,
        flag="--store",
    )
    # Several servers on one PostgreSQL database, each owning the builds of the shards
    # it leases (replicas/); off: one server per database, refused for a second.
    replicas: str = option(
        "off",
        "on: several servers share one PostgreSQL database, each owning a share of the "
        "builds (needs --store); off: one server per database",
        choice("off", "on"),
    )
    # Shards the builds are spread over (shard = hash(build id) mod N); the same on
    # every replica of one database.
    replicas_shards: int = option(
        64, "shards of builds leased among replicas (the same on every replica)", integer(1, 4096)
    )
    # How long a shard's lease lasts unrenewed (renewed every quarter of it): how long
    # a dead replica's builds wait before another replica takes them over.
    replicas_lease: float = option(
        4.0, "seconds a replica's shard lease lasts unrenewed (failover time)", seconds(0.5)
    )
    # SQLite's `synchronous` (store/sqlite.py): NORMAL, or FULL for an fsync per commit.
    sqlite_synchronous: str = option(
        "NORMAL",
        "SQLite: NORMAL (a commit survives a crash of the server, maybe not a power loss) "
        "or FULL (an fsync per commit: it survives a power loss too)",
        choice("NORMAL", "FULL"),
    )
    listen: str = option("127.0.0.1:50051", "gRPC host:port", ADDRESS)
    # 0 picks a free port; the chosen one is printed at start. -1: no /metrics.
    metrics_port: int = option(
        9464, "0 picks a free port, -1 serves no metrics", integer(-1, 65535, "PORT")
    )
    metrics_host: str = option(
        "127.0.0.1",
        "address of /metrics (default 127.0.0.1:--metrics-port); 0.0.0.0:9464 lets a "
        "remote Prometheus scrape it",
        HOST_PORT_PAIR,
        flag="--metrics-listen",
        spread=_metrics_address,
        shown_default="127.0.0.1:--metrics-port",
    )
    # Grace between SIGTERM and SIGKILL when a cancel gives none.
    default_grace_period: float = option(
        10.0,
        "seconds between SIGTERM and SIGKILL when a cancel gives none",
        seconds(),
        flag="--default-grace",
    )
    # Time an agent has, after the grace period, to confirm a stop before the server
    # finalizes the job as FORCED.
    stop_ack_timeout: float = option(
        5.0, "seconds an agent has after the grace to confirm a stop, else FORCED", seconds()
    )
    # Longest the cleanup (run_on_cancel) steps of a job, or one cleanup job, may run.
    cleanup_timeout: float = option(
        60.0,
        "seconds the cleanup (run_on_cancel) steps of a job, or a cleanup job, may run",
        seconds(above=True),
    )
    # Longest a job may run when its pipeline gives no timeout; then the build is
    # cancelled with reason "timeout".
    job_timeout: float = option(3600.0, "seconds (default 1 h)", seconds(above=True))
    # Longest a build may wait QUEUED for an agent; then it is cancelled with reason
    # "queue timeout".
    queue_timeout: float = option(24 * 3600.0, "seconds (default 24 h)", seconds(above=True))
    # How long jobs of a disconnected agent wait for it to come back.
    reconnect_window: float = option(
        30.0, "seconds a dropped agent's jobs wait for it before they end LOST/FORCED", seconds()
    )
    heartbeat_interval: float = 10.0
    # Seconds between rounds of the invariant auditor (which also refreshes the
    # stuck-cancel gauges from the store); 0 turns the rounds off.
    audit_interval: float = option(
        5.0,
        "seconds between invariant audits and stuck-cancel gauge refreshes (0: off)",
        seconds(),
    )
    # The event loop of the process (uvloop: pip install uvloop).
    loop: str = option(
        "asyncio", "event loop: asyncio, or uvloop (pip install uvloop)", choice(*LOOPS)
    )
    # Webhooks told of events (by default every finished cancel; --webhook-event
    # chooses others): durable outbox, delivered at least once.
    webhook_urls: tuple[str, ...] = option(
        (),
        "POST every finished cancel (or the events --webhook-event chooses) to URL "
        "(repeatable; durable outbox, at least once)",
        HTTP_URL,
        flag="--webhook-url",
        repeat=True,
    )
    # Where each signed endpoint's secret is ("N=file:PATH", "N=env:NAME"), never the
    # secret itself (effects/webhook_signing.py reads them at start).
    webhook_secrets: tuple[str, ...] = option(
        (),
        "sign the requests to webhook N (0: the first --webhook-url) with HMAC-SHA256 of "
        "this secret (header X-Buildcontrol-Signature-256)",
        SECRET_SOURCE,
        flag="--webhook-secret",
        repeat=True,
    )
    # Which events each endpoint gets ("N=EVENT"); an endpoint named by none gets
    # build.canceled only, as before events could be chosen (effects/webhook_events.py).
    webhook_events: tuple[tuple[int, WebhookEvent], ...] = option(
        (),
        "send EVENT (build.canceled, build.finished, cancel.accepted, job.stopped) to "
        "webhook N (repeatable; a webhook named by none gets build.canceled only)",
        EVENT_CHOICE,
        flag="--webhook-event",
        repeat=True,
    )
    webhook_max_attempts: int = option(
        5,
        "tries in a row per delivery before it is parked (resent when the endpoint is back)",
        POSITIVE,
    )
    # First retry delay; doubles per attempt (with full jitter) up to 10 s.
    webhook_base_delay: float = option(
        0.2,
        "seconds before the first retry; doubles per attempt",
        seconds(),
        flag="--webhook-retry-delay",
    )
    webhook_request_timeout: float = option(
        5.0, "seconds", seconds(above=True), flag="--webhook-timeout"
    )
    webhook_breaker_threshold: int = option(
        5, "failures in a row that open an endpoint's circuit breaker", POSITIVE
    )
    webhook_breaker_cooldown: float = option(30.0, "seconds", seconds())
    webhook_queue_size: int = option(
        10_000,
        "deliveries held in memory per endpoint; past it the oldest waits in the outbox",
        POSITIVE,
    )
    # Audit records written per transaction.
    audit_batch: int = option(
        500, "audit records the start-up sweep writes per transaction", POSITIVE
    )
    # Bound of the webhook flush at shutdown (on top of shutdown_grace).
    effects_stop_timeout: float = option(
        2.0, "seconds the webhooks get to flush at shutdown", seconds()
    )
    # Bound of SIGTERM drain: agents are told to leave, in-flight RPCs get this long.
    shutdown_grace: float = 5.0
    # ---- step logs (docs/logs.md) ----
    # Bytes of step output kept per job; the agent drops the rest and says how much.
    log_limit_bytes: int = option(
        64 * 1024 * 1024,
        "bytes of step output kept per job; past it one line says how much was dropped",
        integer(1, metavar="BYTES"),
        flag="--log-limit",
    )
    # Days a job's log is kept after its last write; 0 keeps logs forever.
    log_retention_days: float | None = option(
        30.0,
        "days a job's log is kept after its last byte (0: forever)",
        DAYS,
        flag="--log-retention",
    )
    # ---- security and limits ----
    security: SecuritySettings = group(DEFAULT_SECURITY, "authentication and TLS")
    # Largest message the server accepts (grpc answers RESOURCE_EXHAUSTED past it).
    max_message_bytes: int = option(4 * 1024 * 1024, "largest gRPC message accepted", POSITIVE)
    # An agent stream whose first message is not a Hello by then is ended.
    hello_timeout: float = option(
        5.0, "seconds an agent stream has to send its Hello", seconds(above=True)
    )
    # Open AgentService.Connect streams (Hello or not yet); past it RESOURCE_EXHAUSTED.
    # Above any real fleet: it bounds what a flood of connections can hold.
    max_agent_streams: int = option(2_000, "agent streams open at once", POSITIVE)
    # What one submitted build (or cancel reason, or agent Hello) may carry.
    limits: Limits = group(DEFAULT_LIMITS, "limits", options=_LIMIT_OPTIONS)
    # ---- fair limits: what one principal may hold (security/fair_limits.py) ----
    # Open WatchBuild streams of one principal.
    max_watch_streams_per_principal: int = option(
        1_000, "WatchBuild streams one principal may have open", POSITIVE
    )
    # Live (not terminal) builds submitted by one principal.
    max_live_builds_per_principal: int = option(
        10_000, "queued or running builds one principal may have submitted", POSITIVE
    )
    # Open AgentService.Connect streams of one agent token (one agent holds one, two
    # for a moment while it reconnects).
    max_agent_streams_per_token: int = option(
        8, "agent streams one agent token may have open", POSITIVE
    )
    # A Hello may claim at most capacity x this many running jobs; more is refused.
    hello_running_jobs_factor: int = option(
        4, "a Hello may claim at most capacity x this many running jobs", POSITIVE
    )
    # Largest capacity a Hello may claim.
    max_agent_capacity: int = option(1_024, "largest capacity a Hello may claim", POSITIVE)
    # HTTP/2 streams (calls) open at once on one connection (grpc.max_concurrent_streams);
    # a client past it waits for one of its calls to end.
    max_streams_per_connection: int = option(
        1_000, "calls open at once on one connection (HTTP/2 streams)", POSITIVE
    )
    # ---- retention and housekeeping (housekeeping/) ----
    # Days finished builds are kept (with jobs, steps, submit keys and logs); None:
    # for ever. Builds that are not finished are never deleted.
    retain_builds_days: float | None = option(
        90.0, "days finished builds are kept, with their jobs, steps and logs", DAYS
    )
    # At most this many finished builds are kept, the oldest deleted first; None: no cap.
    retain_builds_max: int | None = option(
        None, "most finished builds kept; the oldest go first (default: no cap)", POSITIVE
    )
    # Days cancel audit records are kept (and only once their build is gone).
    retain_audit_days: float | None = option(
        365.0, "days cancel audit records are kept, once their build is gone", DAYS
    )
    # Days finished webhook deliveries (outbox entries and their log) are kept.
    retain_deliveries_days: float | None = option(
        30.0, "days finished webhook deliveries are kept", DAYS
    )
    # Seconds between housekeeping passes (purge, compaction, size gauges); 0: off.
    housekeeping_interval: float = option(
        300.0, "seconds between retention purges and compactions (0: off)", seconds()
    )
    # Seconds between two purge transactions (each at most 500 rows), and at least
    # three times what the last one took; four times that while other writes commit
    # (housekeeper.py).
    housekeeping_pause: float = option(
        0.05,
        "seconds between two purge transactions (at most 500 rows each; 4x while busy)",
        seconds(),
    )
    # ---- logs of the process ----
    log_level: str = option("INFO", "DEBUG, INFO, WARNING or ERROR", choice(*LOG_LEVELS))
    log_format: str = option("text", "json: one object per line", choice(*LOG_FORMATS))

    @property
    def retention_policy(self) -> RetentionPolicy:
        return RetentionPolicy(
            builds_days=self.retain_builds_days,
            builds_max=self.retain_builds_max,
            audit_days=self.retain_audit_days,
            deliveries_days=self.retain_deliveries_days,
        )

    @property
    def stop_times(self) -> StopTimes:
        return StopTimes(ack_timeout=self.stop_ack_timeout, cleanup_timeout=self.cleanup_timeout)

    @cached_property
    def webhook_endpoints(self) -> tuple[Endpoint, ...]:
        """The webhook URLs as the outbox keys them (computed once, not per cancel)."""
        return endpoints_of(self.webhook_urls)

    @cached_property
    def webhook_subscriptions(self) -> Subscriptions:
        """Which endpoints get which event (computed once, not per change). Raises
        WebhookEventsError for an event chosen for a webhook that does not exist."""
        chosen = chosen_events(self.webhook_events, len(self.webhook_urls))
        return subscriptions_of(self.webhook_urls, chosen)

    @property
    def log_dir(self) -> Path:
        """Where the SQLite backend keeps job logs (when store_url is None)."""
        return self.data_dir / "logs"

    @property
    def database_path(self) -> Path:
        """SQLite's file (when store_url is None)."""
        return self.data_dir / "buildcontrol.sqlite3"
