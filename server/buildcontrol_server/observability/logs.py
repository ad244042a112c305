"""Structured logs: `buildcontrol serve --log-format text|json`.

A structured line carries its fields in `record.fields` (a dict), given with `event()`.
The text format appends them as key=value after the message; the JSON format writes one
object per line with the fields beside the message. Only the fields a call site names
are written, never whole objects: a job's environment (which may hold secrets) reaches
no log unless someone writes it into a call, and no call does."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")
FIELDS = "fields"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Values written bare in the text format; anything else (spaces, quotes, newlines from a
# user's cancel reason) is quoted and escaped, so one event stays one line.
_BARE = re.compile(r"[\w.:/@+-]+")


# aiosqlite's DEBUG lines print every SQL statement with its parameters, and the jobs'
# rows carry their environments (secrets): that logger never goes below INFO.
SECRET_CARRYING_LOGGERS = {"aiosqlite": logging.INFO}


def event(logger: logging.Logger, level: int, message: str, /, **fields: Any) -> None:
    """Log `message` with `fields` (JSON-serialisable values) as one structured line."""
    logger.log(level, message, extra={FIELDS: fields})


def quiet_secret_carrying_loggers() -> None:
    """Raise the loggers that would print secrets above the level where they do. Called
    by the server at start, whatever --log-level says."""
    for name, level in SECRET_CARRYING_LOGGERS.items():
        logger = logging.getLogger(name)
        # Its own level, not the effective one: a root logger set to DEBUG later (a
        # --log-level, a test's log capture) must not bring the lines back.
        logger.setLevel(max(logger.level, level))


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, FIELDS, None)
    return fields if isinstance(fields, dict) else {}


def _text_value(value: Any) -> str:
    if isinstance(value, str) and _BARE.fullmatch(value):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, then ` key=value` per field."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # formatMessage, not format: the traceback (if any) still comes after the fields.
        line = super().formatMessage(record)
        fields = fields_of(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={_text_value(v)}" for key, v in fields.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, the fields,
    and the traceback as `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            payload.setdefault(key, value)  # the four keys above are never overwritten
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def formatter_for(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")


def configure(level: str, log_format: str = "text") -> None:
    """Send every log record of the process to stderr in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)
