"""The one declaration of the server's configuration: each Settings field that a person
may set carries an Option in its dataclass metadata (its flag, help and rule); the
`serve` flags, the BUILDCONTROL_* variables, the config-file keys and the table of
docs/operations.md are all made from it (config_sources.py, tools/docs/serve_flags.py).

A field holding another settings dataclass (security, limits, TLS files) is a Group:
its own fields are declared the same way, or, for a dataclass that knows nothing of
flags (domain's Limits), by the Group's `options`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from buildcontrol_server.config_rules import Rule

ENV_PREFIX = "BUILDCONTROL_"
_OPTION = "buildcontrol.option"
_GROUP = "buildcontrol.group"


@dataclass(frozen=True)
class Option:
    help: str
    rule: Rule
    # `--` and the field name with dashes when empty.
    flag: str = ""
    # The flag may be given many times (the setting is a tuple); a variable gives the
    # values separated by commas, a config file as an array.
    repeat: bool = False
    # Sets fields of its dataclass from the parsed value instead of its own field, after
    # (so over) the others: --metrics-listen HOST:PORT sets metrics_host and metrics_port.
    spread: Callable[[Any], dict[str, Any]] | None = None
    # The default as the docs show it, where the field's own default would mislead.
    shown_default: str | None = None


@dataclass(frozen=True)
class Group:
    # Title of the flags' section in `--help`.
    title: str
    # Options of fields whose dataclass carries none (field name → Option).
    options: Mapping[str, Option] = dataclasses.field(default_factory=dict)
    # Makes the group's value from the fields that were given (name → value), for a
    # group whose fields only make sense together; None: the default with them replaced.
    build: Callable[[dict[str, Any]], Any] | None = None
    # The group's dataclass, when its default is None (an optional group).
    kind: type | None = None


def option(default: Any, help: str, rule: Rule, **more: Any) -> Any:
    """A dataclass field declared as a configuration option."""
    if isinstance(default, tuple | list):
        return field(default=tuple(default), metadata={_OPTION: Option(help, rule, **more)})
    return field(default=default, metadata={_OPTION: Option(help, rule, **more)})


def group(default: Any, title: str, **more: Any) -> Any:
    """A dataclass field whose value is a settings dataclass of its own."""
    return field(default=default, metadata={_GROUP: Group(title, **more)})


@dataclass(frozen=True)
class Declared:
    """One option where it sits: the field path from Settings, its default, its section."""

    path: tuple[str, ...]
    option: Option
    default: Any
    section: str

    @property
    def flag(self) -> str:
        return self.option.flag or "--" + self.path[-1].replace("_", "-")

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.dest.upper()

    @property
    def key(self) -> str:
        """Its key in a config file: the flag without the dashes."""
        return self.flag[2:]


def declared(kind: type, default: Any, section: str = "") -> Iterator[Declared]:
    """Every option of dataclass `kind` (and of its groups), in declaration order."""
    for item in dataclasses.fields(kind):
        value = getattr(default, item.name) if default is not None else item.default
        if _OPTION in item.metadata:
            yield Declared((item.name,), item.metadata[_OPTION], value, section)
        elif _GROUP in item.metadata:
            spec: Group = item.metadata[_GROUP]
            inner_kind = spec.kind or type(value)
            for name, extra in spec.options.items():
                inner = getattr(value, name) if value is not None else None
                yield Declared((item.name, name), extra, inner, spec.title)
            for inner_item in declared(inner_kind, value, spec.title):
                yield dataclasses.replace(inner_item, path=(item.name, *inner_item.path))


def built(kind: type, default: Any, given: Mapping[tuple[str, ...], Any]) -> Any:
    """`default` (an instance of `kind`) with the `given` values (field path → value)."""
    changes: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for item in dataclasses.fields(kind):
        inner_given = {path[1:]: value for path, value in given.items() if path[0] == item.name}
        if _GROUP in item.metadata:
            spec: Group = item.metadata[_GROUP]
            current = getattr(default, item.name)
            if spec.build is not None:
                names = {path[0]: value for path, value in inner_given.items()}
                changes[item.name] = spec.build(names) if names else current
            elif inner_given:
                changes[item.name] = built(spec.kind or type(current), current, inner_given)
        elif () in inner_given:
            declaration: Option | None = item.metadata.get(_OPTION)
            if declaration is not None and declaration.spread is not None:
                spread.update(declaration.spread(inner_given[()]))
            else:
                changes[item.name] = inner_given[()]
    return dataclasses.replace(default, **{**changes, **spread})
