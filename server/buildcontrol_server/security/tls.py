"""Listening addresses with their transport security.

- No TLS: plaintext, as before (a laptop, tests, a private network).
- `--tls-cert/--tls-key`: server TLS on every address.
- and `--tls-client-ca`: agents must present a client certificate signed by that CA.
  grpc's Python API can only require client certificates for a whole address (without
  the requirement it does not even ask for one), so: with `--agent-listen`, the agent
  address requires them and the main address (people, tools) asks for none; without
  it, the one address requires them from everyone. Either way the interceptor refuses
  an agent stream whose connection carries no verified client certificate."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from buildcontrol_server.security.errors import SecuritySetupError
from buildcontrol_server.security.settings import SecuritySettings, TlsFiles


class TlsFilesError(SecuritySetupError):
    pass


@dataclass(frozen=True)
class Ports:
    main: int
    agents: int | None = None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise TlsFilesError(f"cannot read the {what} {path}: {error.strerror}") from None


def check_files(files: TlsFiles) -> None:
    """Refuse unusable files with a message naming them; grpc itself would only say
    'Failed to bind to address'. The stdlib ssl module parses PEM just as strictly."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(files.cert, files.key)
    except (ssl.SSLError, OSError) as error:
        raise TlsFilesError(
            f"TLS certificate {files.cert} with key {files.key} is unusable: {error}"
        ) from None
    if files.client_ca is not None:
        try:
            context.load_verify_locations(cafile=files.client_ca)
        except (ssl.SSLError, OSError) as error:
            raise TlsFilesError(f"TLS client CA {files.client_ca} is unusable: {error}") from None


def _credentials(files: TlsFiles, require_client_certificate: bool) -> grpc.ServerCredentials:
    key, cert = _read(files.key, "TLS key"), _read(files.cert, "TLS certificate")
    client_ca = _read(files.client_ca, "TLS client CA") if files.client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=client_ca if require_client_certificate else None,
        require_client_auth=require_client_certificate,
    )


def agents_need_certificate(settings: SecuritySettings) -> bool:
    return settings.tls is not None and settings.tls.client_ca is not None


def add_ports(server: grpc.aio.Server, listen: str, settings: SecuritySettings) -> Ports:
    """Bind the main address (and the agent address, if any); returns the ports.
    Raises OSError naming the address when one cannot be bound (taken, not local)."""
    try:
        return _add_ports(server, listen, settings)
    except RuntimeError as error:
        # grpc says only "Failed to bind to address ..." (and logs the cause itself).
        if "Failed to bind" not in str(error):
            raise
        bound = str(error).split(";")[0]
        raise OSError(
            f"{bound} (in use by another process, or not an address of this host)"
        ) from None


def _add_ports(server: grpc.aio.Server, listen: str, settings: SecuritySettings) -> Ports:
    tls = settings.tls
    if tls is None:
        main = server.add_insecure_port(listen)
        agents = server.add_insecure_port(settings.agent_listen) if settings.agent_listen else None
        return Ports(main, agents)
    check_files(tls)
    mutual = tls.client_ca is not None
    if settings.agent_listen is None:
        return Ports(server.add_secure_port(listen, _credentials(tls, mutual)))
    main = server.add_secure_port(listen, _credentials(tls, False))
    agents = server.add_secure_port(settings.agent_listen, _credentials(tls, mutual))
    return Ports(main, agents)
