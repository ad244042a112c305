"""What a configuration value may be: each rule turns the text of a flag, a variable or a
config-file value into the setting's value, or refuses it with the rule in words.

A refusal raises RuleError whose message completes "VALUE is not ..."; the caller names
where the value came from (config_sources.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from buildcontrol_server.store.factory import StoreUrlError, check_url


class RuleError(ValueError):
    """The value breaks its rule; the message says what the rule asks for."""


@dataclass(frozen=True)
class Rule:
    # What a value must be, in the words of an error and of docs/operations.md.
    words: str
    parse: Callable[[str], Any]
    # The words of the `--help` metavar, e.g. SECONDS, N, HOST:PORT.
    metavar: str
    # An error shows no value (a store URL may carry a password).
    secret: bool = False


def _number(text: str, kind: Callable[[str], Any], words: str) -> Any:
    try:
        value = kind(text.strip())
    except ValueError:
        raise RuleError(words) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise RuleError(words)
    return value


def seconds(minimum: float = 0.0, *, above: bool = False) -> Rule:
    """Seconds, at least `minimum` (or more than it when `above`)."""
    words = f"a number of seconds {'>' if above else '>='} {minimum:g}"

    def parse(text: str) -> float:
        value = float(_number(text, float, words))
        if value < minimum or (above and value == minimum):
            raise RuleError(words)
        return value

    return Rule(words, parse, "SECONDS")


def _days(text: str) -> float | None:
    """Days, 0 meaning for ever (None: nothing is deleted by age)."""
    words = "a number of days >= 0 (0: for ever)"
    value = float(_number(text, float, words))
    if value < 0:
        raise RuleError(words)
    return value or None


DAYS = Rule("a number of days >= 0 (0: for ever)", _days, "DAYS")


def integer(minimum: int = 1, maximum: int | None = None, metavar: str = "N") -> Rule:
    words = f"an integer >= {minimum}" if maximum is None else f"an integer {minimum}..{maximum}"

    def parse(text: str) -> int:
        value = int(_number(text, int, words))
        if value < minimum or (maximum is not None and value > maximum):
            raise RuleError(words)
        return value

    return Rule(words, parse, metavar)


def choice(*choices: str) -> Rule:
    words = "one of " + ", ".join(choices)

    def parse(text: str) -> str:
        for candidate in choices:
            if text.strip().lower() == candidate.lower():
                return candidate
        raise RuleError(words)

    return Rule(words, parse, "{" + ",".join(choices) + "}")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise RuleError("HOST:PORT with a port 0..65535 (e.g. 0.0.0.0:9464)")
    return host.strip("[]"), int(port)


HOST_PORT_PAIR = Rule("HOST:PORT with a port 0..65535", _host_port, "HOST:PORT")


def _address(text: str) -> str:
    _host_port(text)
    return text.strip()


ADDRESS = Rule("HOST:PORT with a port 0..65535", _address, "HOST:PORT")


def _path(text: str) -> Path:
    if not text.strip() or "\0" in text:
        raise RuleError("a path")
    return Path(text)


PATH = Rule("a path", _path, "PATH")


def _text(text: str) -> str:
    if not text.strip():
        raise RuleError("a non-empty text")
    return text


PATTERN = Rule("a non-empty shell pattern", _text, "PATTERN")


def _http_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuleError("an http:// or https:// URL with a host")
    return text.strip()


HTTP_URL = Rule("an http:// or https:// URL with a host", _http_url, "URL")


def _store_url(text: str) -> str:
    try:
        return check_url(text)
    except StoreUrlError as error:
        raise RuleError(f"a store URL ({error})") from None


STORE_URL = Rule("a postgresql://USER@HOST:PORT/DB URL", _store_url, "URL", secret=True)
