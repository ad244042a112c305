"""Security settings of a server (the `serve` flags --auth, --tokens-file,
--restricted-pipeline, --tls-*, --agent-listen fill them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """PEM files. With `client_ca`, agents must present a certificate signed by it."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True)
class SecuritySettings:
    # Off: no token is asked for and every caller may do everything (tests, a laptop).
    auth: bool = True
    # None: tokens.json in the data directory (created on first start).
    tokens_file: Path | None = None
    # Pipelines (shell patterns) whose builds only their submitter or an admin may cancel.
    restricted_pipelines: tuple[str, ...] = ()
    tls: TlsFiles | None = None
    # A second address for agents only. With TLS and a client CA, client certificates
    # are required there, and the main address (for people and tools) asks for none.
    agent_listen: str | None = None


DEFAULT_SECURITY = SecuritySettings()
