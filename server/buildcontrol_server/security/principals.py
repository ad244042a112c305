"""Who a caller is: a principal with a role, or an agent bound to one agent id."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    # Reads builds and agents.
    VIEWER = "viewer"
    # Reads, submits and cancels (subject to the pipeline's cancel policy).
    OPERATOR = "operator"
    # Everything an operator may, and cancels any build whatever its policy.
    ADMIN = "admin"
    # A build agent: only AgentService.Connect, only as its own agent id.
    AGENT = "agent"
    # A job's steps (a job token, job_tokens.py): read their own build, nothing else.
    # Never in the tokens file: the server derives these from AssignJob.
    JOB = "job"


# The roles a token in the tokens file may have.
TOKEN_ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.AGENT)


@dataclass(frozen=True)
class JobScope:
    """What a job token may touch: this job of this build."""

    build_id: str
    job_id: str


# Roles that include the rights of the ones before them; AGENT and JOB stand apart.
_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    # Set for (and only for) agent tokens: the one agent id the token may connect as.
    agent_id: str | None = None
    # False only for ANONYMOUS, the caller of every RPC when authentication is off.
    authenticated: bool = True
    # Set for (and only for) job tokens: the one job, and build, they may read.
    job: JobScope | None = None

    def at_least(self, role: Role) -> bool:
        """True if this principal has `role`'s rights (agents have no human rights)."""
        if self.role not in _RANK or role not in _RANK:
            return self.role is role
        return _RANK[self.role] >= _RANK[role]


# With --auth off every caller is this one: allowed everything, recorded as what the
# request says (requested_by) rather than as a name of its own.
ANONYMOUS = Principal("anonymous", Role.ADMIN, authenticated=False)
