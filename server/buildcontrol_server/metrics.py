"""Every Prometheus metric of the server, in one place. Each says what it measures and
its unit. Nothing else in the code base defines a metric."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from buildcontrol_server.version import version

# Latency buckets from 0.1 ms to 2 h: cancels are measured in milliseconds, but a cancel
# with the longest grace allowed (1 h) plus its ack timeout and cleanup must still land
# in a bucket of its own, not in +Inf.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
)  # fmt: skip

# ---- the process ----
BUILD_INFO = Info("buildcontrol_build", "The server's version (a constant 1 with labels).")
BUILD_INFO.info({"version": version()})

# ---- store ----
STORE_COMMITS = Counter(
    "buildcontrol_store_commits_total", "Write transactions committed by the group-commit writer."
)
STORE_STATEMENTS = Counter(
    "buildcontrol_store_statements_total", "SQL statements executed inside write transactions."
)
STORE_WRITES = Counter(
    "buildcontrol_store_writes_total", "Change sets written (one per state-changing event)."
)
STORE_FAILED_WRITES = Counter(
    "buildcontrol_store_failed_writes_total",
    "Change sets rejected (compare-and-set conflict or SQL error); their callers got the error.",
)
STORE_BATCH_SIZE = Histogram(
    "buildcontrol_store_batch_size_writes",
    "Change sets per committed transaction (group-commit batch size).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
STORE_COMMIT_SECONDS = Histogram(
    "buildcontrol_store_commit_seconds",
    "Time to apply and commit one group-commit batch, in seconds.",
    buckets=LATENCY_BUCKETS,
)
# ---- replicas (--replicas on) ----
REPLICA_FENCED_WRITES = Counter(
    "buildcontrol_replica_fenced_writes_total",
    "Change sets refused because their shard's lease was taken over by another replica"
    " (a zombie's writes; none of them committed).",
)
REPLICA_SHARDS_HELD = Gauge(
    "buildcontrol_replica_shards_held", "Shards of builds whose lease this replica holds now."
)
REPLICA_SHARDS_TAKEN = Counter(
    "buildcontrol_replica_shards_taken_total",
    "Shard leases this replica took (free, released by another replica, or expired).",
)
REPLICA_SHARDS_LOST = Counter(
    "buildcontrol_replica_shards_lost_total",
    "Shard leases this replica lost without releasing them (taken over, or not renewed).",
)
CANCELS_FORWARDED = Counter(
    "buildcontrol_replica_cancels_forwarded_total",
    "Cancels taken here for a build another replica owns, left in its build inbox.",
)
STOPS_FORWARDED = Counter(
    "buildcontrol_replica_stops_forwarded_total",
    "StopJobs left in the agent outbox for an agent whose stream another replica holds.",
)
ASSIGNS_FORWARDED = Counter(
    "buildcontrol_replica_assigns_forwarded_total",
    "AssignJobs left in the agent outbox for an agent whose stream another replica holds"
    " (a job that replica claimed from this one's offers).",
)
OUTBOX_WRITE_RETRIES = Counter(
    "buildcontrol_replica_outbox_write_retries_total",
    "Agent outbox rows (StopJobs, AssignJobs) the database did not take at once and that"
    " are written again (each is retried until it lands).",
)
JOBS_OFFERED = Counter(
    "buildcontrol_replica_jobs_offered_total",
    "Ready jobs offered to the other replicas' agents (no fitting agent with a free slot"
    " was connected here).",
)
OFFERS_CLAIMED = Counter(
    "buildcontrol_replica_offers_claimed_total",
    "Jobs of other replicas claimed here for an agent connected here.",
)
REMOTE_SLOTS_FREED = Counter(
    "buildcontrol_replica_remote_slots_freed_total",
    "Slots of jobs of other replicas' builds freed by the store check here (the job"
    " ended, or its owner refused or never made the assignment).",
)
REPLICA_ROWS_UNREADABLE = Counter(
    "buildcontrol_replica_rows_unreadable_total",
    "Rows of the build inbox, the agent outbox or the job offers whose body could not"
    " be read (written by an incompatible version?), deleted with an error in the log.",
    ["table"],
)
REPLICA_INBOX_APPLIED = Counter(
    "buildcontrol_replica_inbox_applied_total",
    "Commands from other replicas (the build inbox) applied by the owner of their build.",
)
STORE_AVAILABLE = Gauge(
    "buildcontrol_store_available",
    "1 while the store's database is reachable, 0 while writes fail for lack of it"
    " (PostgreSQL; SQLite is always 1).",
)
STORE_CONNECTION_LOSSES = Counter(
    "buildcontrol_store_connection_losses_total",
    "Times the store lost its database connection and turned unavailable (PostgreSQL).",
)

# ---- builds and cancels ----
TRANSITIONS_REJECTED = Counter(
    "buildcontrol_transitions_rejected_total",
    "Events refused because their move is not in the state table.",
    ["entity"],
)
CANCELS = Counter(
    "buildcontrol_cancels_total",
    "Cancel requests by result (accepted, escalated, joined, already_canceled, refused).",
    ["result"],
)
JOB_OUTCOMES = Counter(
    "buildcontrol_job_outcomes_total",
    "Jobs ended with an outcome: cancelled ones by how they ended (GRACEFUL, KILLED, FORCED,"
    " NEVER_STARTED), and LOST (the agent never came back; the job FAILED).",
    ["outcome"],
)
CANCEL_ACCEPTED_SECONDS = Histogram(
    "buildcontrol_cancel_accepted_seconds",
    "Cancel request received to CANCELING committed, in seconds.",
    buckets=LATENCY_BUCKETS,
)
CANCEL_TERMINAL_SECONDS = Histogram(
    "buildcontrol_cancel_terminal_seconds",
    "Cancel request received to CANCELED committed, in seconds.",
    buckets=LATENCY_BUCKETS,
)
# ---- observability: the two cancel phases between accepted and terminal ----
CANCEL_STOP_DELIVERED_SECONDS = Histogram(
    "buildcontrol_cancel_stop_delivered_seconds",
    "Cancel request received to its StopJob written to the agent's stream, one per stop, in"
    " seconds (stops re-sent on a reconnect are not measured again).",
    buckets=LATENCY_BUCKETS,
)
CANCEL_JOB_STOPPED_SECONDS = Histogram(
    "buildcontrol_cancel_job_stopped_seconds",
    "Cancel request received to the agent's stop confirmation applied (job CANCELED as"
    " GRACEFUL or KILLED), one per job, in seconds. FORCED jobs are counted by"
    " buildcontrol_stop_deadlines_expired_total instead.",
    buckets=LATENCY_BUCKETS,
)
BUILDS_CANCELING = Gauge(
    "buildcontrol_builds_canceling",
    "Builds in CANCELING as committed in the store (read every --audit-interval).",
)
OLDEST_CANCELING_AGE_SECONDS = Gauge(
    "buildcontrol_oldest_canceling_age_seconds",
    "Age in seconds of the oldest build in CANCELING in the store, 0 when none; on the"
    " monotonic clock once seen (a wall clock step does not move it). The stuck-cancel"
    " detector.",
)
# ---- end observability (cancel phases) ----
REPORTS_ACKNOWLEDGED = Counter(
    "buildcontrol_agent_reports_acknowledged_total",
    "Job results (JobFinished/JobStopped) acknowledged to agents in ReportsCommitted "
    "after their commit (or because their build needs them no more).",
)
STOPS_SENT = Counter("buildcontrol_stop_jobs_sent_total", "StopJob messages queued to agents.")
STOPS_BATCHED = Counter(
    "buildcontrol_stop_jobs_batched_total",
    "Stops written to agents inside a StopJobs message (several in one) rather than as"
    " a StopJob each: stops queued together for an agent that takes batches.",
)
STOPS_RESENT = Counter(
    "buildcontrol_stop_jobs_resent_total", "StopJob messages sent again on an agent's reconnect."
)
STOPS_DROPPED = Counter(
    "buildcontrol_stops_dropped_total",
    "StopJob messages not queued to any stream, by reason: session_closed (the agent's"
    " stream had ended or was draining), agent_not_connected (no stream now; the stop is"
    " sent again when the agent reconnects, or its deadline finalizes the job).",
    ["reason"],
)
ASSIGNS_PENDING = Counter(
    "buildcontrol_assign_jobs_pending_total",
    "AssignJob messages not queued because the agent had no live stream; each is sent"
    " again from the build's state when the agent reconnects (count).",
)
STOP_DEADLINES_EXPIRED = Counter(
    "buildcontrol_stop_deadlines_expired_total",
    "Jobs finalized as FORCED because their agent did not confirm the stop in time.",
)
SUPERSEDES_REFUSED = Counter(
    "buildcontrol_supersedes_refused_total",
    "Older builds a cancel_in_progress submit left alone: its submitter may not cancel them.",
)
LIVE_ACTORS = Gauge("buildcontrol_live_build_actors", "Build actors alive (non-terminal builds).")
ACTOR_RESTARTS = Counter(
    "buildcontrol_actor_restarts_total",
    "Build actors whose loop raised and that were restarted from the store (each is logged"
    " with its traceback).",
)
INVARIANT_VIOLATIONS = Counter(
    "buildcontrol_invariant_violations_total",
    "Violations found by the invariant auditor, by invariant (each is an ERROR log line"
    " naming the build).",
    ["invariant"],
)
INBOX_DEPTH_MAX = Gauge(
    "buildcontrol_actor_inbox_depth_max",
    "Commands waiting in the deepest build-actor inbox, computed at scrape time.",
)

# ---- agents ----
AGENTS_CONNECTED = Gauge("buildcontrol_agents_connected", "Agents with a live stream now.")
AGENT_CONNECTS = Counter(
    "buildcontrol_agent_connects_total", "Agent streams opened (first connects and reconnects)."
)
AGENT_RECONNECTS = Counter(
    "buildcontrol_agent_reconnects_total",
    "Agent streams opened by an agent already seen since the server started.",
)
AGENTS_SUSPECT = Gauge(
    "buildcontrol_agents_suspect",
    "Agents suspect now: they let a stop deadline pass (hung, or ignoring stops) and have not"
    " answered since (a job report or a reconnect); they get no new jobs meanwhile.",
)
AGENTS_LOST = Counter(
    "buildcontrol_agents_lost_total",
    "Agents lost to their builds: dropped and not back within the reconnect window (with"
    " replicas: held by no replica for that long; one that moved is not counted).",
)

# ---- gRPC server (observability/interceptor.py; issue 5) ----
GRPC_SERVER_HANDLED = Counter(
    "buildcontrol_grpc_server_handled_total",
    "RPCs finished, by service, method, type (unary, server_stream, client_stream,"
    " bidi_stream) and status code (aborts counted by their code).",
    ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
)
GRPC_SERVER_HANDLING_SECONDS = Histogram(
    "buildcontrol_grpc_server_handling_seconds",
    "Time from an RPC's start to its status, in seconds; for a stream its whole life (agent"
    " streams live for days: look at unary calls for latency).",
    ["grpc_service", "grpc_method", "grpc_type"],
    buckets=LATENCY_BUCKETS,
)
# ---- end gRPC server ----

# ---- series exported at 0 from the start ----
# Every job outcome and cancel result, so increase() and the alert rules see the first
# one (a series that appears already at 1 shows no increase).
for _outcome in ("GRACEFUL", "KILLED", "FORCED", "NEVER_STARTED", "LOST"):
    JOB_OUTCOMES.labels(outcome=_outcome)
for _result in ("accepted", "escalated", "joined", "already_canceled", "refused"):
    CANCELS.labels(result=_result)
# ---- end series exported at 0 ----

# ---- side effects: audit log and webhooks (effects/) ----
AUDIT_RECORDS_WRITTEN = Counter(
    "buildcontrol_audit_records_written_total",
    "Cancel audit records committed by the audit writer (sweep included; a record already"
    " present is ignored by the database and still counted).",
)
AUDIT_RECORDS_SWEPT = Counter(
    "buildcontrol_audit_records_swept_total",
    "Audit records recovered at start-up for CANCELED builds that had none (a crash or a"
    " shutdown came between the cancel and its audit write).",
)
AUDIT_WRITE_FAILURES = Counter(
    "buildcontrol_audit_write_failures_total",
    "Failed audit writes or sweep reads; each is retried with backoff, no record is dropped.",
)
WEBHOOK_DELIVERIES = Counter(
    "buildcontrol_webhook_deliveries_total",
    "Webhook notifications by endpoint and result: delivered, retried (one per retry"
    " attempt), gave_up (retries of this run exhausted: parked), rejected (4xx other than"
    " 429, not retried), dropped_queue_full (oldest dropped from memory for a newer one;"
    " the outbox keeps it), dropped_breaker_open (parked), dropped_shutdown (still pending"
    " when the server stopped; the outbox keeps it), handed_on (its build moved to another"
    " replica, which delivers it).",
    ["endpoint", "result"],
)
WEBHOOK_REQUEST_SECONDS = Histogram(
    "buildcontrol_webhook_request_seconds",
    "Duration of one webhook POST (any outcome, timeouts included), in seconds.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
WEBHOOK_BREAKER_STATE = Gauge(
    "buildcontrol_webhook_breaker_state",
    "Circuit breaker per webhook endpoint: 0 closed, 1 open (requests skipped), 2 half-open.",
    ["endpoint"],
)
WEBHOOK_QUEUE_DEPTH = Gauge(
    "buildcontrol_webhook_queue_depth_notifications",
    "Webhook notifications waiting for their endpoint's worker.",
    ["endpoint"],
)
WEBHOOK_OUTBOX_RECOVERED = Counter(
    "buildcontrol_webhook_outbox_recovered_total",
    "Webhook deliveries found undelivered in the outbox at start and queued again, by"
    " endpoint (left by a crash, a shutdown, or a receiver that was down).",
    ["endpoint"],
)
WEBHOOK_LOG_WRITE_FAILURES = Counter(
    "buildcontrol_webhook_log_write_failures_total",
    "Failed writes of the webhook delivery log (logged; at worst the delivery is sent"
    " again after a restart).",
)
SIDE_EFFECT_ERRORS = Counter(
    "buildcontrol_side_effect_errors_total",
    "Exceptions raised while handing committed notifications to a side effect (webhooks);"
    " logged and counted, never passed to the build's actor.",
    ["effect"],
)

# ---- security ----
CALLS_ENDED_BY_REVOCATION = Counter(
    "buildcontrol_calls_ended_by_revocation_total",
    "Open calls (agent streams, WatchBuild, Cancel streams) ended with UNAUTHENTICATED"
    " because their token was revoked or changed, or their job token's job finished.",
)
UNDECODABLE_HEADERS = Counter(
    "buildcontrol_undecodable_headers_total",
    "Request header values that were not UTF-8 (the requests are refused; logged at most"
    " once a minute).",
)

# ---- fair limits (security/fair_limits.py; docs/limits.md has the table) ----
LIMIT_IN_USE = Gauge(
    "buildcontrol_limit_in_use",
    "Current use of a limit: for a per-principal (or per-token) limit, the most that any"
    " one holder has now; for a global one, the total. Units are the limit's own"
    " (streams, builds).",
    ["limit"],
)
LIMIT_MAX = Gauge(
    "buildcontrol_limit_max",
    "The configured maximum of a limit (its serve flag), in the limit's own units.",
    ["limit"],
)
LIMIT_REFUSED = Counter(
    "buildcontrol_limit_refused_total",
    "Calls refused with RESOURCE_EXHAUSTED because they would pass a limit.",
    ["limit"],
)

# ---- step logs ----
LOG_BYTES_RECEIVED = Counter(
    "buildcontrol_log_received_bytes_total",
    "Bytes of step output received from agents (UploadLogs), resent bytes included.",
)
LOGS_DELETED = Counter(
    "buildcontrol_logs_deleted_total",
    "Job logs deleted, by retention (--log-retention) or with their deleted builds.",
)
# ---- housekeeping (housekeeping/housekeeper.py) ----
STORE_TABLE_ROWS = Gauge(
    "buildcontrol_store_table_rows",
    "Rows in each table of the store (counted at each housekeeping pass).",
    ["table"],
)
STORE_DATABASE_BYTES = Gauge(
    "buildcontrol_store_database_bytes",
    "Bytes the database takes: SQLite's file and WAL, or PostgreSQL's pg_database_size"
    " (at each housekeeping pass).",
)
RETENTION_PURGED_ROWS = Counter(
    "buildcontrol_retention_purged_rows_total",
    "Rows deleted past the retention policy or by a manual purge, per table.",
    ["table"],
)
RETENTION_OLDEST_FINISHED_AGE_SECONDS = Gauge(
    "buildcontrol_retention_oldest_finished_build_age_seconds",
    "Seconds since the oldest finished build still stored finished (0: none stored).",
)
HOUSEKEEPING_FAILURES = Counter(
    "buildcontrol_housekeeping_failures_total",
    "Housekeeping steps that failed and were logged (a pass, or the hook that deletes"
    " the logs of purged builds).",
    ["step"],
)
