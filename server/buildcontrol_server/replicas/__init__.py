"""Several server replicas on one PostgreSQL database (--replicas on): shard leases
(ownership with fencing), what happens to a shard's builds when its lease moves, and
the router that knows where a build lives."""
