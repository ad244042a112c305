"""Access audit: one structured log line per refused call (WARNING), and per allowed
call that changes something (INFO). Lines name the principal, its role, the method,
the verdict (a status code name or ALLOWED) and the peer; never a token, never the
request (a job's environment may hold secrets)."""

from __future__ import annotations

import logging

from buildcontrol_server.observability.logs import event

log = logging.getLogger("buildcontrol.audit.access")

# Calls worth a line when allowed: they change builds or agents. Reads are not audited
# when allowed (they would drown the rest).
CHANGING_METHODS = frozenset(
    {
        "/buildcontrol.v1.BuildControl/SubmitBuild",
        "/buildcontrol.v1.BuildControl/Cancel",
        "/buildcontrol.v1.BuildControl/CancelBuilds",
        "/buildcontrol.v1.AgentService/Connect",
    }
)


def refused(principal: str, role: str, method: str, verdict: str, peer: str, detail: str) -> None:
    event(
        log,
        logging.WARNING,
        "access refused",
        principal=principal,
        role=role,
        method=method,
        verdict=verdict,
        peer=peer,
        detail=detail[:300],
    )


def allowed(principal: str, role: str, method: str, peer: str) -> None:
    if method in CHANGING_METHODS:
        event(
            log,
            logging.INFO,
            "access allowed",
            principal=principal,
            role=role,
            method=method,
            verdict="ALLOWED",
            peer=peer,
        )
