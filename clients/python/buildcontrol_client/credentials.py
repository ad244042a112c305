"""Channel security of the client and the agent: TLS, and a client certificate for
servers that require one (mutual TLS, as agents need under `serve --tls-client-ca`).
The bearer token travels as call metadata (auth.py), on top of whichever channel.

    tls = TlsOptions(ca_file=Path("ca.pem"))                  # trust this CA
    tls = TlsOptions(ca_file=..., cert_file=..., key_file=...) # and prove who we are
    channel = open_channel("server:50051", tls=tls)

Without TLS the token crosses the network in plaintext: fine on loopback, a risk
anywhere else (a warning says so when a token is sent that way).

Every channel is opened with load_balancing.py's options, so a target naming several
servers spreads the calls over them and retries the idempotent ones on another."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from buildcontrol_client.load_balancing import is_loopback, with_load_balancing

log = logging.getLogger("buildcontrol.client")


class CredentialsError(OSError):
    """A TLS file that cannot be read; an OSError, so the CLI reports it like one."""


@dataclass(frozen=True)
class TlsOptions:
    # The CA that signed the server's certificate; None: the system's root CAs.
    ca_file: Path | None = None
    # A client certificate and its key (PEM), for mutual TLS.
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate and its key go together")

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            _read(self.ca_file, "CA certificate"),
            _read(self.key_file, "client key"),
            _read(self.cert_file, "client certificate"),
        )


def tls_options(
    use_tls: bool, ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> TlsOptions | None:
    """TLS if asked for or implied by any TLS file (the CLI's --tls/--tls-* flags)."""
    if not (use_tls or ca_file or cert_file or key_file):
        return None
    return TlsOptions(ca_file, cert_file, key_file)


def channel_credentials(
    target: str, tls: TlsOptions | None, sends_token: bool
) -> grpc.ChannelCredentials | None:
    """The credentials of a channel to `target` (None: plaintext), for the async and the
    blocking channel alike; warns when a token would cross the network in plaintext."""
    if tls is not None:
        return tls.channel_credentials()
    if sends_token and not is_loopback(target):
        log.warning("sending a bearer token to %s without TLS: it can be read on the way", target)
    return None


def open_channel(
    target: str,
    options: Sequence[tuple[str, Any]] = (),
    tls: TlsOptions | None = None,
    sends_token: bool = False,
) -> grpc.aio.Channel:
    credentials = channel_credentials(target, tls, sends_token)
    options = with_load_balancing(options)
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=options)
    return grpc.aio.insecure_channel(target, options=options)


def open_blocking_channel(
    target: str,
    options: Sequence[tuple[str, Any]] = (),
    tls: TlsOptions | None = None,
    sends_token: bool = False,
) -> grpc.Channel:
    """open_channel's twin for the blocking client (grpc's own synchronous channel)."""
    credentials = channel_credentials(target, tls, sends_token)
    options = with_load_balancing(options)
    if credentials is not None:
        return grpc.secure_channel(target, credentials, options=options)
    return grpc.insecure_channel(target, options=options)


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise CredentialsError(f"cannot read the {what} {path}: {error.strerror}") from None


# ---- the CLI's TLS flags (every client command and the agent) ------------------------


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS")
    group.add_argument("--tls", action="store_true", help="TLS with the system's root CAs")
    group.add_argument("--tls-ca", type=Path, metavar="FILE", help="TLS, trusting this CA (PEM)")
    group.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help="client certificate (PEM), for mutual TLS"
    )
    group.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key (PEM)")


def tls_from(args: argparse.Namespace) -> TlsOptions | None:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CredentialsError("--tls-cert and --tls-key go together")
    return tls_options(args.tls, args.tls_ca, args.tls_cert, args.tls_key)
