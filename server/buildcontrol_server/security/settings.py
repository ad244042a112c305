"""Security settings of a server, declared with their `serve` flags (--auth,
--tokens-file, --restricted-pipeline, --tls-*, --agent-listen; config_options.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildcontrol_server.config_options import Option, group, option
from buildcontrol_server.config_rules import ADDRESS, PATH, PATTERN, choice


@dataclass(frozen=True)
class TlsFiles:
    """PEM files. With `client_ca`, agents must present a certificate signed by it."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class TlsFlagsError(SystemExit):
    """A TLS flag without the ones it needs."""


def tls_files_of(given: dict[str, Any]) -> TlsFiles:
    """The TLS files from those given; cert and key go together, a client CA needs both."""
    if ("cert" in given) != ("key" in given):
        raise TlsFlagsError("buildcontrol: --tls-cert and --tls-key go together")
    if "cert" not in given:
        raise TlsFlagsError("buildcontrol: --tls-client-ca needs --tls-cert and --tls-key")
    return TlsFiles(given["cert"], given["key"], given.get("client_ca"))


_TLS_OPTIONS = {
    "cert": Option("server certificate (PEM)", PATH, flag="--tls-cert"),
    "key": Option("server private key (PEM)", PATH, flag="--tls-key"),
    "client_ca": Option(
        "CA (PEM) whose client certificates agents must present (mutual TLS)",
        PATH,
        flag="--tls-client-ca",
    ),
}
_ON_OFF = choice("on", "off")


def _auth(value: str) -> dict[str, Any]:
    return {"auth": value == "on"}


@dataclass(frozen=True)
class SecuritySettings:
    # Off: no token is asked for and every caller may do everything (tests, a laptop).
    auth: bool = option(
        True,
        "bearer tokens and roles (default on; off: anyone may do anything)",
        _ON_OFF,
        spread=_auth,
    )
    # None: tokens.json in the data directory (created on first start).
    tokens_file: Path | None = option(
        None,
        "token hashes, roles, agent ids (default DATA_DIR/tokens.json, created with an "
        "admin and an agent token on first start)",
        PATH,
    )
    # Pipelines (shell patterns) whose builds only their submitter or an admin may cancel.
    restricted_pipelines: tuple[str, ...] = option(
        (),
        "builds of matching pipelines (shell pattern, repeatable) may be cancelled only "
        "by their submitter or an admin; others by any operator",
        PATTERN,
        flag="--restricted-pipeline",
        repeat=True,
    )
    tls: TlsFiles | None = group(
        None, "authentication and TLS", options=_TLS_OPTIONS, build=tls_files_of, kind=TlsFiles
    )
    # A second address for agents only. With TLS and a client CA, client certificates
    # are required there, and the main address (for people and tools) asks for none.
    agent_listen: str | None = option(
        None,
        "a second address for agents; with --tls-client-ca only it asks for client certificates",
        ADDRESS,
    )


DEFAULT_SECURITY = SecuritySettings()
