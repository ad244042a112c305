"""Every flag of every client `buildcontrol` command can also come from the environment:
`--reconnect-for` is BUILDCONTROL_RECONNECT_FOR (`serve` reads its own variables, with
its config file: config_sources.py). The command line wins over the environment, which wins
over the built-in default. A value the flag's own type refuses is a usage error that
names the variable (exit 2)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping

from buildcontrol_server.cli import OWN_ENVIRONMENT

PREFIX = "BUILDCONTROL_"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
# Variables that already mean something else: the token itself (not --token-file's
# path) is BUILDCONTROL_TOKEN, and the client's server address BUILDCONTROL_ADDR.
_SKIP = frozenset({"--help", "--version"})


def variable_of(action: argparse.Action) -> str | None:
    longest = max(action.option_strings, key=len, default="")
    if not longest.startswith("--") or longest in _SKIP:
        return None
    return PREFIX + longest[2:].upper().replace("-", "_")


Owned = tuple[argparse.ArgumentParser, argparse.Action]


def _actions(parser: argparse.ArgumentParser, argv: list[str]) -> Iterator[Owned]:
    """The flags of `parser` and of the subcommand that `argv` runs."""
    words = [word for word in argv if not word.startswith("-")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(words[0]) if words else None
            if chosen is not None and not chosen.get_default(OWN_ENVIRONMENT):
                yield from _actions(chosen, argv[argv.index(words[0]) + 1 :])
        else:
            yield parser, action


def apply_environment(
    parser: argparse.ArgumentParser, argv: list[str], environ: Mapping[str, str]
) -> None:
    """Make each flag's default the value of its variable, where one is set."""
    for owner, action in _actions(parser, argv):
        name = variable_of(action)
        if name is None or name not in environ:
            continue
        text = environ[name]
        try:
            action.default = _value(action, text)
        except (argparse.ArgumentTypeError, ValueError) as error:
            owner.error(f"{name}={text!r}: {error}")
        if action.required:
            action.required = False  # the environment gave it


def _value(action: argparse.Action, text: str) -> object:
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        lowered = text.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise ValueError("must be true or false")
        flag = lowered in _TRUE
        return flag if isinstance(action, argparse._StoreTrueAction) else not flag
    convert = action.type if callable(action.type) else str
    if isinstance(action, argparse._AppendAction):
        return [convert(item.strip()) for item in text.split(",") if item.strip()]
    value = convert(text)
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"must be one of {', '.join(map(str, action.choices))}")
    return value


def environment_table(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """(flag, variable) of every flag of `parser`, for the docs."""
    rows = []
    for action in parser._actions:
        name = variable_of(action)
        if name is not None:
            rows.append((max(action.option_strings, key=len), name))
    return rows
