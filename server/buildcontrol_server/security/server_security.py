"""What app.py wires in: the interceptor, the tokens it checks, the listening ports."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import grpc

from buildcontrol_server.domain.model import Build
from buildcontrol_server.security import tls
from buildcontrol_server.security.caller import submitter_of
from buildcontrol_server.security.cancel_policy import CancelRules
from buildcontrol_server.security.interceptor import AuthInterceptor
from buildcontrol_server.security.settings import SecuritySettings
from buildcontrol_server.security.tokens import TokenRegistry, TokensFileError, bootstrap

TOKENS_FILE_NAME = "tokens.json"


def default_tokens_file(data_dir: Path) -> Path:
    return data_dir / TOKENS_FILE_NAME


class ServerSecurity:
    def __init__(self, settings: SecuritySettings, data_dir: Path) -> None:
        self.settings = settings
        self._explicit_file = settings.tokens_file is not None
        path = settings.tokens_file or default_tokens_file(data_dir)
        self.tokens = TokenRegistry(path) if settings.auth else None
        self.rules = CancelRules(settings.restricted_pipelines)
        self.interceptor = AuthInterceptor(
            self.tokens,
            self.rules,
            agents_need_certificate=tls.agents_need_certificate(settings),
        )

    def prepare(self) -> None:
        """Read the tokens file, or on a first start create it. Raises
        SecuritySetupError. A named (--tokens-file) file that does not exist is an
        error, not a first start: a typo must not mint a new admin token."""
        if self.settings.tls is not None:
            tls.check_files(self.settings.tls)  # named here, not as "Failed to bind"
        if self.tokens is None:
            return
        path = self.tokens.path
        if not path.exists():
            if self._explicit_file:
                raise TokensFileError(f"tokens file {path} does not exist")
            created = bootstrap(path)
            # The one place the token files are named: stderr of this start, not a log.
            print(created.hint(), file=sys.stderr, flush=True)
        self.tokens.load()

    def supersede_check(self, newer: Build) -> Callable[[Build], None] | None:
        """The cancel-policy check of `newer`'s submitter, for supersedes re-applied on
        recovery; None with authentication off."""
        if self.tokens is None:
            return None
        return submitter_of(newer, self.rules).check_cancel

    def add_ports(self, server: grpc.aio.Server, listen: str) -> tls.Ports:
        return tls.add_ports(server, listen, self.settings)

    def describe(self, agent_port: int | None) -> str:
        """The tail of the server's ready line: agent address, TLS, auth."""
        parts = []
        if agent_port is not None and self.settings.agent_listen is not None:
            host = self.settings.agent_listen.rsplit(":", 1)[0]
            parts.append(f"agents on {host}:{agent_port}")
        if self.settings.tls is not None:
            mutual = " (agents: client certificates)" if self.settings.tls.client_ca else ""
            parts.append(f"TLS{mutual}")
        parts.append(f"auth on ({self.tokens.path})" if self.tokens is not None else "auth off")
        return "".join(f", {part}" for part in parts)
