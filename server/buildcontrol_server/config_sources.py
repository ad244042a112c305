"""Where `buildcontrol serve` reads its settings: each option of the declaration
(config.py) from its flag, else its BUILDCONTROL_* variable, else its key in the TOML
file of `--config FILE` (or $BUILDCONTROL_CONFIG), else the built-in default.

Every value goes through its option's rule whatever its source; a refused one is one
line on stderr naming the source (flag, variable or file key), the value and the rule,
and exit code 2."""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from buildcontrol_server.config import Settings
from buildcontrol_server.config_options import ENV_PREFIX, Declared, built, declared
from buildcontrol_server.config_rules import RuleError
from buildcontrol_server.effects.webhook_events import WebhookEventsError

CONFIG_FLAG = "--config"
CONFIG_VARIABLE = ENV_PREFIX + "CONFIG"
USAGE_ERROR = 2


def options() -> list[Declared]:
    return list(declared(Settings, Settings()))


def add_flags(serve: argparse.ArgumentParser) -> None:
    """One flag per option; the values stay text until `settings_of` checks them."""
    serve.add_argument(
        CONFIG_FLAG,
        type=Path,
        metavar="FILE",
        help=f"TOML file of settings (keys: the flags without --; also ${CONFIG_VARIABLE})",
    )
    sections: dict[str, argparse._ArgumentGroup] = {}
    for item in options():
        target: argparse.ArgumentParser | argparse._ArgumentGroup = serve
        if item.section:
            if item.section not in sections:
                sections[item.section] = serve.add_argument_group(item.section)
            target = sections[item.section]
        target.add_argument(
            item.flag,
            dest=item.dest,
            action="append" if item.option.repeat else "store",
            metavar=item.option.rule.metavar,
            help=item.option.help,
        )


def _fail(source: str, value: object, reason: str, *, secret: bool = False) -> NoReturn:
    shown = "(not shown)" if secret else repr(value)
    print(f"buildcontrol serve: {source}={shown} is not {reason}", file=sys.stderr)
    raise SystemExit(USAGE_ERROR)


def _texts(item: Declared, value: object, source: str) -> list[str]:
    """The config file's `value` as the texts a flag would give."""
    values = value if isinstance(value, list) and item.option.repeat else [value]
    texts = []
    for one in values:
        if isinstance(one, bool):
            texts.append("on" if one else "off")
        elif isinstance(one, str | int | float) and not isinstance(one, list):
            texts.append(str(one))
        else:
            _fail(source, value, item.option.rule.words, secret=item.option.rule.secret)
    return texts


def _sources(
    item: Declared, args: argparse.Namespace, environ: Mapping[str, str], file: dict[str, Any]
) -> tuple[str, list[str]] | None:
    """(source, texts) of the first source giving `item`, or None for its default."""
    given = getattr(args, item.dest, None)
    if given is not None:
        return item.flag, given if isinstance(given, list) else [given]
    text = environ.get(item.variable, "")
    if text:
        if item.option.repeat:
            return item.variable, [part.strip() for part in text.split(",") if part.strip()]
        return item.variable, [text]
    if item.key in file:
        source = f"{file['__path__']}: {item.key}"
        return source, _texts(item, file[item.key], source)
    return None


def _parsed(item: Declared, source: str, texts: list[str]) -> object:
    values = []
    for text in texts:
        try:
            values.append(item.option.rule.parse(text))
        except RuleError as error:
            _fail(source, text, str(error), secret=item.option.rule.secret)
    return tuple(values) if item.option.repeat else values[-1]


def read_file(path: Path | None) -> dict[str, Any]:
    """The TOML file's keys (plus `__path__`); an unknown key is a usage error."""
    if path is None:
        return {"__path__": ""}
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle)
    except OSError as error:
        _fail(CONFIG_FLAG, str(path), f"a readable file ({error.strerror})")
    except tomllib.TOMLDecodeError as error:
        _fail(CONFIG_FLAG, str(path), f"a TOML file ({error})")
    known = {item.key for item in options()}
    for key in table:
        if key not in known:
            _fail(f"{path}: {key}", table[key], "a known key (the flags of serve without --)")
    return {**table, "__path__": str(path)}


def given_values(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> Iterator[tuple[tuple[str, ...], object]]:
    """(field path, checked value) of every option that some source gives."""
    config = args.config
    if config is None and environ.get(CONFIG_VARIABLE):
        config = Path(environ[CONFIG_VARIABLE])
    file = read_file(config)
    for item in options():
        found = _sources(item, args, environ, file)
        if found is not None:
            yield item.path, _parsed(item, *found)


def settings_of(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """The settings `serve` runs with (exits 2 on a refused value, or on values that
    do not fit together)."""
    settings: Settings = built(Settings, Settings(), dict(given_values(args, environ)))
    try:
        settings.webhook_subscriptions  # noqa: B018 - checks --webhook-event's positions
    except WebhookEventsError as error:
        print(f"buildcontrol serve: {error}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None
    return settings
