"""A row of the build inbox, the agent outbox or the job offers whose body cannot be
read: written by a version that put something else in it (a rolling upgrade gone
wrong), or by a bug. Left in place it would fail every round that reads it (for the
outbox: every row after it, for every agent of that replica), so it is deleted with
an error in the log and counted (`buildcontrol_replica_rows_unreadable_total`).
Fields a body has beyond those known here are ignored (`known_fields`): a newer
version may add some."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from buildcontrol_server import metrics

log = logging.getLogger(__name__)

# What reading a body raises: not JSON (ValueError), a field missing (KeyError), one of
# the wrong type (TypeError, ValueError).
UNREADABLE = (ValueError, TypeError, KeyError)


def known_fields(cls: type[Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The items of `fields` that name a field of the dataclass `cls`."""
    names = {field.name for field in dataclasses.fields(cls)}
    return {name: value for name, value in fields.items() if name in names}


def unreadable_row(table: str, row: object, kind: str, error: Exception) -> None:
    """Count and log the row `row` (its id, or its job's) of `table`, deleted."""
    metrics.REPLICA_ROWS_UNREADABLE.labels(table=table).inc()
    log.error("%s row %s (%s) cannot be read and is deleted: %r", table, row, kind, error)
