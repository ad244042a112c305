"""The SQL of retention (purge, dry run, table sizes), written once for both backends.

Statements use `?` placeholders and two dialect fragments: a list of ids passed as one
parameter (SQLite: a JSON array read with json_each; PostgreSQL: a text[] array), and
the placeholder style (PostgreSQL numbers them: `$1`, `$2`, …). Every condition on
builds repeats TERMINAL_WHERE, the condition of the builds_finished partial index, so
both databases walk that index (few pages per batch) instead of the whole table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from buildcontrol_server.domain.retention import PURGED_TABLES

# The condition of the builds_finished partial index (schema v10); only these builds
# are ever deleted: a live build is never past a retention policy.
TERMINAL_WHERE = "status IN ('SUCCEEDED', 'FAILED', 'CANCELED')"
# Delivery states still to be sent (domain/deliveries.py UNFINISHED_STATES): an outbox
# entry with one of these is kept whatever its age.
UNFINISHED_DELIVERY = "state IN ('FAILED', 'PENDING')"

# Tables whose rows the metrics count: the ones a purge deletes from.
COUNTED_TABLES = PURGED_TABLES


@dataclass(frozen=True)
class Dialect:
    # `IN (…)` over one parameter holding a list of ids.
    ids_fragment: str
    numbered_placeholders: bool

    def ids(self, values: list[str]) -> Any:
        return json.dumps(values) if not self.numbered_placeholders else list(values)

    def sql(self, statement: str) -> str:
        statement = statement.replace("IN_IDS", self.ids_fragment)
        if not self.numbered_placeholders:
            return statement
        counter = iter(range(1, 1_000))
        return re.sub(r"\?", lambda _: f"${next(counter)}", statement)


SQLITE = Dialect("IN (SELECT value FROM json_each(?))", numbered_placeholders=False)
POSTGRES = Dialect("IN (SELECT unnest(?::text[]))", numbered_placeholders=True)

# The oldest finished builds, oldest first (ties by id): purge candidates, each with
# the rows it would take along (itself, its jobs, their steps, its submit keys), in
# one read: each count is an index walk of a few rows.
OLDEST_FINISHED = (
    "SELECT build_id, finished_at, 1"
    " + (SELECT count(*) FROM jobs WHERE jobs.build_id = builds.build_id)"
    " + (SELECT count(*) FROM jobs JOIN steps ON steps.job_id = jobs.job_id"
    " WHERE jobs.build_id = builds.build_id)"
    " + (SELECT count(*) FROM submit_requests"
    " WHERE submit_requests.build_id = builds.build_id)"
    f" FROM builds WHERE {TERMINAL_WHERE} ORDER BY finished_at, build_id LIMIT ?"
)
COUNT_FINISHED = f"SELECT count(*) FROM builds WHERE {TERMINAL_WHERE}"
COUNT_FINISHED_BEFORE = f"SELECT count(*) FROM builds WHERE {TERMINAL_WHERE} AND finished_at < ?"
OLDEST_FINISHED_AT = f"SELECT min(finished_at) FROM builds WHERE {TERMINAL_WHERE}"

# One purge transaction of builds, children first (foreign keys). The terminal
# condition again: the ids were read before this transaction, and a status that is
# terminal never changes, so this only guards against a caller's mistake.
DELETE_BUILDS = (
    (
        "steps",
        "DELETE FROM steps WHERE job_id IN (SELECT jobs.job_id FROM jobs JOIN builds"
        " ON builds.build_id = jobs.build_id"
        f" WHERE jobs.build_id IN_IDS AND builds.{TERMINAL_WHERE})",
    ),
    (
        "jobs",
        "DELETE FROM jobs WHERE build_id IN (SELECT build_id FROM builds"
        f" WHERE build_id IN_IDS AND {TERMINAL_WHERE})",
    ),
    (
        "submit_requests",
        "DELETE FROM submit_requests WHERE build_id IN (SELECT build_id FROM builds"
        f" WHERE build_id IN_IDS AND {TERMINAL_WHERE})",
    ),
    ("builds", f"DELETE FROM builds WHERE build_id IN_IDS AND {TERMINAL_WHERE}"),
)

# Audit records past their window whose build is gone (a record outlives its build:
# deleting one of a build still stored would make the start-up sweep write it again).
_AUDIT_PAST = (
    "finished_at < ? AND NOT EXISTS"
    " (SELECT 1 FROM builds WHERE builds.build_id = cancel_audit.build_id)"
)
DELETE_AUDIT = (
    "DELETE FROM cancel_audit WHERE build_id IN (SELECT build_id FROM cancel_audit"
    f" WHERE {_AUDIT_PAST} ORDER BY finished_at LIMIT ?)"
)
COUNT_AUDIT = f"SELECT count(*) FROM cancel_audit WHERE {_AUDIT_PAST}"

# Outbox entries past their window whose every delivery finished.
_OUTBOX_PAST = (
    "created_at < ? AND NOT EXISTS (SELECT 1 FROM webhook_deliveries"
    f" WHERE webhook_deliveries.delivery_id = webhook_outbox.delivery_id"
    f" AND webhook_deliveries.{UNFINISHED_DELIVERY})"
)
OLD_OUTBOX = (
    f"SELECT delivery_id FROM webhook_outbox WHERE {_OUTBOX_PAST} ORDER BY created_at LIMIT ?"
)
DELETE_DELIVERIES = (
    ("webhook_deliveries", "DELETE FROM webhook_deliveries WHERE delivery_id IN_IDS"),
    ("webhook_outbox", "DELETE FROM webhook_outbox WHERE delivery_id IN_IDS"),
)
COUNT_OUTBOX = f"SELECT count(*) FROM webhook_outbox WHERE {_OUTBOX_PAST}"
COUNT_OUTBOX_DELIVERIES = (
    "SELECT count(*) FROM webhook_deliveries WHERE delivery_id IN"
    f" (SELECT delivery_id FROM webhook_outbox WHERE {_OUTBOX_PAST})"
)

# A dry run of builds: what the first `?` (a count) oldest finished builds hold.
_DOOMED = (
    f"SELECT build_id FROM builds WHERE {TERMINAL_WHERE} ORDER BY finished_at, build_id LIMIT ?"
)
COUNT_DOOMED_JOBS = f"SELECT count(*) FROM jobs WHERE build_id IN ({_DOOMED})"
COUNT_DOOMED_STEPS = (
    "SELECT count(*) FROM jobs JOIN steps ON steps.job_id = jobs.job_id"
    f" WHERE jobs.build_id IN ({_DOOMED})"
)
COUNT_DOOMED_KEYS = f"SELECT count(*) FROM submit_requests WHERE build_id IN ({_DOOMED})"
# Audit records that a purge of the doomed builds would free and that are past their
# own window: their build is already gone or goes in this purge.
COUNT_DOOMED_AUDIT = (
    "SELECT count(*) FROM cancel_audit WHERE finished_at < ? AND (build_id IN"
    f" ({_DOOMED}) OR NOT EXISTS"
    " (SELECT 1 FROM builds WHERE builds.build_id = cancel_audit.build_id))"
)


def count_rows(table: str) -> str:
    if table not in COUNTED_TABLES:
        raise ValueError(f"not a counted table: {table}")
    return f"SELECT count(*) FROM {table}"
