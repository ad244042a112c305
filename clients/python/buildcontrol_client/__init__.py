"""Python client of buildcontrol: typed async and sync clients, pipeline files, the
reference build agent, and the client subcommands of the `buildcontrol` CLI."""

from buildcontrol_client.agent import Agent, AgentOptions
from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.errors import (
    BuildControlError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    StreamEndedEarly,
    Unauthenticated,
    Unavailable,
)
from buildcontrol_client.pipeline_file import PipelineFileError, load_pipeline_file, parse_pipeline
from buildcontrol_client.sync_client import SyncBuildControlClient

__all__ = [
    "Agent",
    "AgentOptions",
    "BuildControlClient",
    "BuildControlError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "PipelineFileError",
    "ResourceExhausted",
    "StreamEndedEarly",
    "SyncBuildControlClient",
    "Unauthenticated",
    "Unavailable",
    "load_pipeline_file",
    "parse_pipeline",
]
