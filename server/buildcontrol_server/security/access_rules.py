"""Which role each RPC needs. A method of ours missing here is refused to everyone
(PERMISSION_DENIED): a new RPC stays closed until someone decides who may call it."""

from __future__ import annotations

from buildcontrol_server.security.principals import Role

_CONTROL = "/buildcontrol.v1.BuildControl/"

REQUIRED_ROLE: dict[str, Role] = {
    _CONTROL + "GetBuild": Role.VIEWER,
    _CONTROL + "ListBuilds": Role.VIEWER,
    _CONTROL + "WatchBuild": Role.VIEWER,
    _CONTROL + "ListAgents": Role.VIEWER,
    _CONTROL + "GetJobLog": Role.VIEWER,
    _CONTROL + "FollowJobLog": Role.VIEWER,
    _CONTROL + "SubmitBuild": Role.OPERATOR,
    # Operators in general; which builds exactly is the pipeline's cancel policy,
    # checked against each build (cancel_policy.py).
    _CONTROL + "Cancel": Role.OPERATOR,
    _CONTROL + "CancelBuilds": Role.OPERATOR,
    # The delivery log names every cancelled build and its endpoints' answers, and a
    # redelivery sends data out of the server: admins only.
    _CONTROL + "ListWebhookDeliveries": Role.ADMIN,
    _CONTROL + "RedeliverWebhook": Role.ADMIN,
    "/buildcontrol.v1.AgentService/Connect": Role.AGENT,
    # Only a job token, for its own job (JOB_METHODS): no other credential, not even an
    # admin's or the agent's own, can write into a job's log.
    "/buildcontrol.v1.AgentService/UploadLogs": Role.JOB,
    # A purge deletes history for everyone: admins only (its dry run too, for one rule).
    "/buildcontrol.v1.Housekeeping/Purge": Role.ADMIN,
}

AGENT_CONNECT = "/buildcontrol.v1.AgentService/Connect"
UPLOAD_LOGS = "/buildcontrol.v1.AgentService/UploadLogs"
# A job's log may still be uploading when its result is in (the agent reports a stop as
# soon as the processes are gone, then sends the log's last bytes): its token may call
# UploadLogs for this long after the job ended, until the log is complete (a complete
# log takes no more bytes).
LOG_TAIL_SECONDS = 60.0

# All a job token may call, and only for its own build (the interceptor checks the
# request's build_id): the steps of a job read how their build is doing. The log
# methods check the job too (rpc/log_upload.py): a job reads and writes its own log.
JOB_METHODS = frozenset(
    {
        _CONTROL + "GetBuild",
        _CONTROL + "WatchBuild",
        _CONTROL + "GetJobLog",
        _CONTROL + "FollowJobLog",
        "/buildcontrol.v1.AgentService/UploadLogs",
    }
)

# Served without a token: load balancers and probes check health, and `grpcurl list`
# / `buf curl` discover the API through reflection. Neither reveals or changes builds.
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def is_open(method: str) -> bool:
    return method.startswith(OPEN_SERVICES)
