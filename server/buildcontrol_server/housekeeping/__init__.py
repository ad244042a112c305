"""Housekeeping of a server that runs for years: retention of finished builds, audit
records and webhook deliveries, compaction of the database at quiet moments, and the
gauges of its size."""
