"""`buildcontrol health`: asks the server's grpc.health.v1 service, for container
HEALTHCHECKs, systemd watchdogs and load balancers. Health needs no token."""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from buildcontrol_client.cli_exit import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from buildcontrol_client.credentials import open_channel, tls_from

# The service names the server reports on (server/buildcontrol_server/app.py): "" is
# the whole server.
SERVICE_HELP = 'service to ask about ("" = the whole server, the default)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", default="", help=SERVICE_HELP)
    parser.add_argument(
        "--timeout", type=float, default=3.0, metavar="SECONDS", help="give up after this long"
    )


async def health(args: argparse.Namespace) -> int:
    """Exit 0 when SERVING, 1 when the server answers anything else (draining, store
    down), 3 when it cannot be reached in time."""
    async with open_channel(args.server, tls=tls_from(args)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = await stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.aio.AioRpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return EXIT_UNAVAILABLE
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(status)
    return EXIT_OK if answer.status == health_pb2.HealthCheckResponse.SERVING else EXIT_FAILED
