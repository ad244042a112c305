"""The `serve` flags of authentication, TLS and limits, and the Settings they make.
Kept here so the server CLI only calls `add_arguments` and `settings_of`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from buildcontrol_client.arg_types import positive_float, positive_int

from buildcontrol_server.config import Settings
from buildcontrol_server.domain.submission import Limits
from buildcontrol_server.security.settings import SecuritySettings, TlsFiles

# Limits.field → (flag, help)
_LIMIT_FLAGS = {
    "max_stages": ("--max-stages", "stages per build"),
    "max_jobs": ("--max-jobs", "jobs per build"),
    "max_steps": ("--max-steps", "steps per build"),
    "max_name_length": (
        "--max-name-length",
        "characters of a name (pipeline, stage, job, step, group, agent id, label, env name)",
    ),
    "max_command_length": ("--max-command-length", "characters of a step's command"),
    "max_env_vars": ("--max-env-vars", "environment variables per job"),
    "max_env_value_length": ("--max-env-value-length", "characters of an env value"),
    "max_labels": ("--max-labels", "labels per job or agent"),
    "max_reason_length": ("--max-reason-length", "characters of a cancel reason"),
}


# Settings.field → (flag, help)
_FAIR_LIMIT_FLAGS = {
    "max_watch_streams_per_principal": (
        "--max-watch-streams-per-principal",
        "WatchBuild streams one principal may have open",
    ),
    "max_live_builds_per_principal": (
        "--max-live-builds-per-principal",
        "queued or running builds one principal may have submitted",
    ),
    "max_agent_streams_per_token": (
        "--max-agent-streams-per-token",
        "agent streams one agent token may have open",
    ),
    "hello_running_jobs_factor": (
        "--hello-running-jobs-factor",
        "a Hello may claim at most capacity x this many running jobs",
    ),
    "max_agent_capacity": ("--max-agent-capacity", "largest capacity a Hello may claim"),
    "max_streams_per_connection": (
        "--max-streams-per-connection",
        "calls open at once on one connection (HTTP/2 streams)",
    ),
}


def add_arguments(serve: argparse.ArgumentParser, defaults: Settings) -> None:
    security = serve.add_argument_group("authentication and TLS")
    security.add_argument(
        "--auth",
        choices=("on", "off"),
        default="on",
        help="bearer tokens and roles (default on; off: anyone may do anything)",
    )
    security.add_argument(
        "--tokens-file",
        type=Path,
        help="token hashes, roles, agent ids (default DATA_DIR/tokens.json, created with an "
        "admin and an agent token on first start)",
    )
    security.add_argument(
        "--restricted-pipeline",
        action="append",
        default=[],
        metavar="PATTERN",
        help="builds of matching pipelines (shell pattern, repeatable) may be cancelled only "
        "by their submitter or an admin; others by any operator",
    )
    security.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    security.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    security.add_argument(
        "--tls-client-ca",
        type=Path,
        help="CA (PEM) whose client certificates agents must present (mutual TLS)",
    )
    security.add_argument(
        "--agent-listen",
        metavar="HOST:PORT",
        help="a second address for agents; with --tls-client-ca only it asks for "
        "client certificates",
    )
    limits = serve.add_argument_group("limits")
    limits.add_argument(
        "--max-message-bytes",
        type=positive_int,
        default=defaults.max_message_bytes,
        help="largest gRPC message accepted",
    )
    limits.add_argument(
        "--hello-timeout",
        type=positive_float,
        default=defaults.hello_timeout,
        help="seconds an agent stream has to send its Hello",
    )
    limits.add_argument(
        "--max-agent-streams",
        type=positive_int,
        default=defaults.max_agent_streams,
        help="agent streams open at once",
    )
    for field, (flag, text) in _LIMIT_FLAGS.items():
        default = getattr(defaults.limits, field)
        limits.add_argument(flag, type=positive_int, default=default, help=text)
    fair = serve.add_argument_group("fair limits (per principal; docs/limits.md)")
    for field, (flag, text) in _FAIR_LIMIT_FLAGS.items():
        fair.add_argument(flag, type=positive_int, default=getattr(defaults, field), help=text)


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """Settings fields from the flags above. Exits with a message on a bad combination."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("buildcontrol: --tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise SystemExit("buildcontrol: --tls-client-ca needs --tls-cert and --tls-key")
    tls = None
    if args.tls_cert is not None:
        tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
    return {
        "security": SecuritySettings(
            auth=args.auth == "on",
            tokens_file=args.tokens_file,
            restricted_pipelines=tuple(args.restricted_pipeline),
            tls=tls,
            agent_listen=args.agent_listen,
        ),
        "limits": Limits(**{field: getattr(args, field) for field in _LIMIT_FLAGS}),
        "max_message_bytes": args.max_message_bytes,
        "hello_timeout": args.hello_timeout,
        "max_agent_streams": args.max_agent_streams,
        **{field: getattr(args, field) for field in _FAIR_LIMIT_FLAGS},
    }
