"""Wiring and lifecycle of one server process: open the store, recover live builds,
serve gRPC (with health and reflection) and metrics, and drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import grpc
from buildcontrol_proto.message_limits import MAX_RESPONSE_BYTES
from buildcontrol_proto.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    build_control_pb2,
    build_control_pb2_grpc,
    housekeeping_pb2,
    housekeeping_pb2_grpc,
)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from buildcontrol_server import interpreter_tuning
from buildcontrol_server.actors.agent_link import LocalAgentLink
from buildcontrol_server.actors.context import ActorContext
from buildcontrol_server.actors.control import BuildControl
from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.actors.scheduler import Scheduler
from buildcontrol_server.agents.events import AgentEvents
from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.app_wiring import (
    Clocks,
    Endpoints,
    housekeeper_for,
    log_retention_for,
    webhook_notifier,
)
from buildcontrol_server.config import Settings
from buildcontrol_server.domain.model import Build
from buildcontrol_server.effects.audit import AuditLog
from buildcontrol_server.effects.side_effects import SideEffectsRunner
from buildcontrol_server.effects.webhook_admin import WebhookAdmin
from buildcontrol_server.logs import retention
from buildcontrol_server.logs.service import JobLogs
from buildcontrol_server.observability.interceptor import MetricsInterceptor
from buildcontrol_server.observability.invariants import InvariantAuditor, audit_every
from buildcontrol_server.observability.live_builds import LiveBuildGauges
from buildcontrol_server.observability.logs import quiet_secret_carrying_loggers
from buildcontrol_server.replicas.chores import Chore
from buildcontrol_server.replicas.replica import Replica, leases_for
from buildcontrol_server.rpc.agent_service import AgentServicer
from buildcontrol_server.rpc.build_control import BuildControlServicer
from buildcontrol_server.rpc.housekeeping_service import HousekeepingServicer
from buildcontrol_server.rpc.log_upload import JobViews
from buildcontrol_server.security import data_at_rest, fair_limits
from buildcontrol_server.security.errors import SecuritySetupError
from buildcontrol_server.security.fair_limits import HeldCounts
from buildcontrol_server.security.server_security import ServerSecurity
from buildcontrol_server.store.errors import StoreOpenError
from buildcontrol_server.store.factory import build_store

log = logging.getLogger("buildcontrol")

SERVICE_NAMES = (
    build_control_pb2.DESCRIPTOR.services_by_name["BuildControl"].full_name,
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    housekeeping_pb2.DESCRIPTOR.services_by_name["Housekeeping"].full_name,
)

# Agents ping every 30-60 s; allow pings more often than that so the
# server never drops them with "too_many_pings". No max_connection_age: agent streams
# are meant to live for days.
GRPC_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]


class ServerApp:
    def __init__(self, settings: Settings, clocks: Clocks | None = None) -> None:
        """`clocks`: the wall and monotonic clocks the server runs on (tests step
        the wall clock to show that no deadline follows it)."""
        clocks = clocks or Clocks()
        quiet_secret_carrying_loggers()  # SQL debug lines would print jobs' env values
        self.settings = settings
        self._wall_clock = clocks.wall
        self.leases = leases_for(settings)  # --replicas on: the shards it owns
        self.store = build_store(
            settings.store_url, settings.database_path, settings.sqlite_synchronous, self.leases
        )
        self.notifier = webhook_notifier(settings, self.store, self.leases)
        self.effects = SideEffectsRunner(
            AuditLog(self.store, batch=settings.audit_batch), self.notifier
        )
        self.hub, self.scheduler, self.registry = self._actors(clocks)
        self.replica, self.control = self._control(clocks)
        # Step logs; `logs.store.delete_logs(build_ids)` deletes those of deleted builds.
        jobs = JobViews.of(self.control.get)
        log_store, log_limit = retention.log_store_for(settings), settings.log_limit_bytes
        self.logs = JobLogs(log_store, jobs.state, log_limit, jobs.tail_expected)
        self._clocks = clocks
        self.health = health.aio.HealthServicer()
        self.watch_streams = HeldCounts(
            fair_limits.limit(fair_limits.WATCH_STREAMS, settings.max_watch_streams_per_principal)
        )
        # Enforced by grpc itself (a client past it waits): only its maximum is shown.
        fair_limits.limit(
            fair_limits.STREAMS_PER_CONNECTION, settings.max_streams_per_connection
        ).publish()
        # Tokens, roles, mutual TLS; after the metrics interceptor (refusals counted).
        self.security = ServerSecurity(
            settings.security, settings.data_dir, self._live_build, settings.store_url,
            jobs.state if self.replica is not None else None, jobs.end, clocks.wall,
        )  # fmt: skip
        self.server = self._grpc_server()
        # Builds in CANCELING and the oldest one's age (from the store), inbox depth.
        self.live_gauges = LiveBuildGauges(
            self.registry.live, self.store, clocks.wall, clocks.monotonic
        )
        self.live_gauges.bind()
        # Tests call `await app.auditor.check()`; the server runs it every interval.
        self.auditor = InvariantAuditor(self.store, self.registry, self.hub)
        self._audits: asyncio.Task[None] | None = None
        # Retention purges, compaction, size gauges; the logs of purged builds go too.
        self.housekeeper = housekeeper_for(settings, self.store, clocks.wall, self.logs.store)
        # Here, or on the replica holding shard 0 (replicas/chores.py).
        self._chores: list[Chore] = [
            self.housekeeper,
            log_retention_for(settings, self.logs.store, clocks.wall),
        ]
        self._metrics_server: object | None = None
        # Availability changes move health only between start's SERVING and stop.
        self._started = False
        self._stopping = False
        self._health_update: asyncio.Task[None] | None = None

    def _grpc_server(self) -> grpc.aio.Server:
        return grpc.aio.server(
            interceptors=[MetricsInterceptor(), self.security.interceptor],
            options=[
                *GRPC_OPTIONS,
                ("grpc.max_receive_message_length", self.settings.max_message_bytes),
                ("grpc.max_concurrent_streams", self.settings.max_streams_per_connection),
                # What the Python clients accept (a build at the limits is ~10 MiB).
                ("grpc.max_send_message_length", MAX_RESPONSE_BYTES),
            ],
        )

    def _actors(self, clocks: Clocks) -> tuple[AgentHub, Scheduler, Registry]:
        """Made in the order the arrows point (docs/architecture.md): the hub first, the
        actors' ports on it, then the registry; what the hub has to say goes up as
        events its subscribers receive."""
        agent_events = AgentEvents()
        hub = AgentHub(self.settings.reconnect_window, agent_events)
        scheduler = Scheduler(hub)
        context = ActorContext(
            self.store,
            LocalAgentLink(hub),
            scheduler,
            self.settings,
            effects=self.effects,
            clock=clocks.wall,
            monotonic=clocks.monotonic,
        )
        registry = Registry(context)
        if self.leases is None:  # a replica's lost agents go through replicas/away_agents.py
            agent_events.subscribe(registry.agent_event)
        agent_events.subscribe(scheduler.agent_event)
        return hub, scheduler, registry

    def _control(self, clocks: Clocks) -> tuple[Replica | None, BuildControl]:
        """The control the RPC layer calls; with --replicas on, a replica's, which
        answers for builds other replicas own too (replicas/control.py)."""
        args = (self.store, self.registry, self.hub, self.settings, clocks.wall)
        if self.leases is None:
            return None, BuildControl(*args)
        replica = Replica(
            self.leases, self.store, self.registry, self.hub, self.notifier, self.scheduler
        )
        return replica, replica.control(*args)

    async def _recover(self, port: int) -> None:
        """Every unfinished build gets its actor; a replica's: those of the shards it
        takes (now, and each later takeover)."""
        if self.replica is None:
            self.registry.recover(await self.store.load_unfinished(), self.security.supersede_check)
            return
        address = f"{self.settings.listen.rsplit(':', 1)[0]}:{port}"
        await self.replica.start(self.security.supersede_check, address, self._chores)

    async def start(self) -> Endpoints:
        """Open the store, listen, recover, and only then report SERVING."""
        # The data dir (tokens file, job-token key, SQLite's database): 0700, not world-writable.
        if self._file_backed():
            data_at_rest.prepare_directory(self.settings.data_dir)
        await self.store.open()
        await self.logs.store.open()
        self.store.watch_availability(self._store_availability_changed)
        if self._file_backed():
            data_at_rest.narrow_files(data_at_rest.database_files(self.settings.database_path))
        # After the store: a data directory the store refuses is reported alone,
        # before any tokens file is created in it.
        await self.security.prepare()
        await self.effects.start()
        build_control_pb2_grpc.add_BuildControlServicer_to_server(
            BuildControlServicer(
                self.control,
                WebhookAdmin(self.store, self.notifier),
                self.watch_streams,
                self.logs,
            ),
            self.server,
        )
        agent_pb2_grpc.add_AgentServiceServicer_to_server(
            AgentServicer(self.control, self.settings, self.security.job_tokens, self.logs),
            self.server,
        )
        housekeeping_pb2_grpc.add_HousekeepingServicer_to_server(
            HousekeepingServicer(self.housekeeper, self._wall_clock), self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        ports = self.security.add_ports(self.server, self.settings.listen)
        await self.server.start()
        self.security.start_checking()  # revocations reach open calls
        metrics_port = self._start_metrics()
        await self._recover(ports.main)
        self.control.recovered.set()
        self.scheduler.start()
        await self.live_gauges.refresh()
        if self.settings.audit_interval > 0:
            self._audits = asyncio.create_task(
                audit_every(self.settings.audit_interval, self.auditor, self.live_gauges),
                name="invariant-audits",
            )
        if self.replica is None:
            for chore in self._chores:
                chore.start()
        self._started = True
        # Unless the database went away during recovery (its return sets SERVING).
        if self.store.available:
            await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        return Endpoints(grpc_port=ports.main, metrics_port=metrics_port, agent_port=ports.agents)

    def _live_build(self, build_id: str) -> Build | None:
        actor = self.registry.get(build_id)
        return actor.build if actor is not None else None

    def _file_backed(self) -> bool:
        return str(self.settings.database_path) != ":memory:"

    def _store_availability_changed(self, available: bool) -> None:
        """NOT_SERVING while the database is unreachable (writes fail meanwhile), so
        load balancers and agents look elsewhere; SERVING again once it is back."""
        if self._stopping or not self._started:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if available
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        # Health updates are coroutines: each waits for the one before, so the last
        # change of availability is the status that stays.
        previous = self._health_update
        self._health_update = asyncio.get_running_loop().create_task(
            self._set_health_after(previous, status), name="store-health"
        )

    async def _set_health_after(
        self,
        previous: asyncio.Task[None] | None,
        status: health_pb2.HealthCheckResponse.ServingStatus,
    ) -> None:
        if previous is not None:
            await previous
        await self._set_health(status)

    def _start_metrics(self) -> int:
        if self.settings.metrics_port < 0:
            return -1
        server, _thread = start_http_server(
            self.settings.metrics_port, addr=self.settings.metrics_host
        )
        self._metrics_server = server
        return int(server.server_port)

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Drain, in an order that loses no stop: NOT_SERVING and refuse new submits,
        cancels and agent streams (UNAVAILABLE); let the cancels under way commit, so
        their StopJobs are queued in the agents' sessions; then tell agents to leave
        (Drain goes out behind those stops); end the open cancel streams with
        UNAVAILABLE (their cancels are committed and resume after the restart) rather
        than letting them hold the grace; then stop gRPC and finish writes."""
        # Before the first await: no new submit, cancel or agent stream gets in.
        self.control.begin_drain()
        self._stopping = True
        if self._health_update is not None:
            await self._health_update
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._audits is not None:
            self._audits.cancel()
            await asyncio.gather(self._audits, return_exceptions=True)
        for chore in self._chores:
            await chore.stop()
        await self._let_cancels_settle()
        self.hub.drain("server shutting down; reconnect later")
        self.control.cancel_streams.end_all()
        self.control.open_watches.end_all()
        await self.server.stop(self.settings.shutdown_grace)
        await self.security.stop_checking()
        await self.scheduler.stop()
        if self.replica is not None:
            await self.replica.stop()
        await self.registry.shutdown()
        if self.replica is not None:  # after the actors' last writes: others take over now
            await self.replica.hand_back()
        await self.effects.stop(self.settings.effects_stop_timeout)
        self.hub.stop_timers()
        await self.store.close()
        await self.logs.store.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()  # type: ignore[attr-defined]
            self._metrics_server.server_close()  # type: ignore[attr-defined]

    async def _let_cancels_settle(self) -> None:
        """Wait (at most the shutdown grace) for the cancels already under way."""
        in_flight = self.control.cancels_in_flight
        if not len(in_flight):
            return
        log.info("draining: waiting for %d cancel(s) under way", len(in_flight))
        try:
            async with asyncio.timeout(self.settings.shutdown_grace):
                await in_flight.settled()
        except TimeoutError:
            log.warning(
                "draining: %d cancel(s) still under way after %.1fs; their stops are sent "
                "again when their agents reconnect",
                len(in_flight),
                self.settings.shutdown_grace,
            )


async def serve(settings: Settings) -> int:
    # Handlers first: a SIGTERM that arrives during start-up still drains cleanly.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    data_at_rest.restrict_process_umask()
    try:
        app = ServerApp(settings)
    except ValueError as error:
        # A webhook URL or secret the server cannot use (the message holds neither).
        print(f"buildcontrol: {error}", file=sys.stderr)
        return 1
    try:
        endpoints = await app.start()
    except data_at_rest.UnsafeDataDir as error:
        print(f"buildcontrol: {error}", file=sys.stderr)
        return 2
    except StoreOpenError as error:
        print(f"buildcontrol: {error}", file=sys.stderr)
        return 1
    except SecuritySetupError as error:
        print(f"buildcontrol: {error}", file=sys.stderr)
        await app.store.close()
        return 1
    except OSError as error:
        print(f"buildcontrol: cannot listen: {error}", file=sys.stderr)
        await app.effects.stop(0)
        await app.store.close()
        return 1
    interpreter_tuning.tune_for_server()
    host = settings.listen.rsplit(":", 1)[0]
    print(
        f"buildcontrol serving gRPC on {host}:{endpoints.grpc_port}, "
        f"metrics on http://{settings.metrics_host}:{endpoints.metrics_port}/metrics, "
        f"database {app.store.path}{app.security.describe(endpoints.agent_port)}",
        flush=True,
    )
    await stopping.wait()
    log.info("draining")
    await app.stop()
    log.info("stopped")
    return 0
