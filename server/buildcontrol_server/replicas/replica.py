"""One replica's parts, made and started together by app.py when --replicas is on."""

from __future__ import annotations

import logging
from typing import Any

from buildcontrol_server.actors.registry import Registry, SupersedeCheck
from buildcontrol_server.actors.scheduler import Scheduler
from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.config import Settings
from buildcontrol_server.domain.errors import Unavailable
from buildcontrol_server.replicas.agent_delivery import AgentDelivery, ReplicaAgentLink
from buildcontrol_server.replicas.away_agents import AwayAgents
from buildcontrol_server.replicas.change_feed import ChangeFeed
from buildcontrol_server.replicas.chores import Chore, DatabaseChores, Undelivered
from buildcontrol_server.replicas.claims import OfferClaims
from buildcontrol_server.replicas.control import ReplicaControl
from buildcontrol_server.replicas.inbox import BuildInbox
from buildcontrol_server.replicas.leases import ShardLeases
from buildcontrol_server.replicas.offers import JobOffers
from buildcontrol_server.replicas.router import ReplicaRouter
from buildcontrol_server.replicas.takeover import Takeover
from buildcontrol_server.store.base import BuildStore
from buildcontrol_server.store.postgres_connections import PostgresConnections

log = logging.getLogger(__name__)


def leases_for(settings: Settings) -> ShardLeases | None:
    """The shard leases of this process; None unless --replicas is on."""
    if settings.replicas != "on":
        return None
    return ShardLeases(settings.replicas_shards, settings.replicas_lease, settings.listen)


class Replica:
    def __init__(
        self,
        leases: ShardLeases,
        store: BuildStore,
        registry: Registry,
        hub: AgentHub,
        notifier: Undelivered,
        scheduler: Scheduler,
    ) -> None:
        connections = getattr(store, "connections", None)
        if not isinstance(connections, PostgresConnections):
            raise TypeError("replicas need the PostgreSQL store")
        self.leases = leases
        self.router = ReplicaRouter(registry, leases)
        registry.router = self.router
        registry.owns = leases.owns
        self.feed = ChangeFeed(connections)
        self.inbox = BuildInbox(connections, leases, registry)
        self.feed.on_inbox(self.inbox.woken)
        # Stops for agents held by other replicas go through the agent outbox.
        self.delivery = AgentDelivery(connections, hub, leases)
        self.feed.on_agent_outbox(self.delivery.woken)
        self.feed.on_stop_row(self.delivery.carried)
        # An agent that left this replica is lost only if no other one holds it; one
        # held elsewhere and given a job here is looked at the same way.
        self.away = AwayAgents(connections, hub, leases, registry.agent_event)
        hub.events.subscribe(self.away.agent_event)
        self.feed.on_agent_outbox(self.away.woken)
        registry.context.link = ReplicaAgentLink(hub, self.delivery, self.away.watch)
        # Jobs no agent here fits are offered to the other replicas' agents; this
        # replica claims theirs for its own agents (offers.py, claims.py).
        self.offers = JobOffers(connections, leases, scheduler, registry.context.link)
        scheduler.elsewhere = self.offers
        self.inbox.assignments = self.offers.assign
        self.feed.on_offers(self.offers.woken)
        self.claims = OfferClaims(connections, hub, leases)
        self.feed.on_offers(self.claims.woken)
        hub.events.subscribe(self.claims.agent_event)
        # Housekeeping on one replica; webhooks of a build from its owner.
        self.chores = DatabaseChores(leases, notifier)
        # Leases lost while the database was away: once it is back, the agents held
        # here say Hello again (jobs ended meanwhile by the new owner are stopped).
        self._cut_off = False
        leases.subscribe(self)
        store.watch_availability(self._availability)
        self._connections = connections
        self._store = store
        self._registry = registry
        self._hub = hub

    async def gained(self, shards: set[int]) -> None:
        return None

    async def releasing(self, shards: set[int]) -> None:
        return None

    async def lost(self, shards: set[int]) -> None:
        self._cut_off = self._cut_off or not self._store.available

    def _availability(self, available: bool) -> None:
        if available and self._cut_off:
            self._cut_off = False
            log.info("the database is back after this replica lost its shards: agents Hello again")
            self._hub.drain("this server was cut off from the database: Hello again")

    def control(self, *args: Any, **kwargs: Any) -> ReplicaControl:
        """The control (BuildControl's arguments) that answers for other replicas'
        builds through the database."""
        return ReplicaControl(
            *args, inbox=self.inbox, feed=self.feed, delivery=self.delivery, **kwargs
        )

    async def start(
        self, supersede_check: SupersedeCheck | None, address: str, chores: list[Chore]
    ) -> None:
        """Take a first share of the shards and recover their builds (in place of the
        one-server recovery of every unfinished build), then listen. `address`: where
        this replica listens, the name other replicas show a caller sent here;
        `chores`: the work of the whole database, run while shard 0 is held here."""
        self.leases.name = address
        self.chores.assign(chores)
        takeover = Takeover(self.leases, self._store, self._registry, self._hub, supersede_check)
        self.leases.subscribe(takeover)
        self.leases.subscribe(self.inbox)  # after the recovery: its actors take the rows
        self.leases.subscribe(self.chores)
        await self.leases.start(self._connections)
        self.feed.start()

    async def stop(self) -> None:
        """Stop renewing and listening; the leases are handed back by `hand_back` once
        the actors have written what they had."""
        await self.feed.stop()
        await self.inbox.stop()
        await self.delivery.stop()
        await self.claims.stop()
        await self.away.stop()
        await self.leases.stop()
        await self.chores.stop()

    async def hand_back(self) -> None:
        try:
            await self.leases.release_all()
        except Unavailable as error:  # the database is away: the leases expire instead
            log.warning("shard leases not handed back (%s); they expire on their own", error)
