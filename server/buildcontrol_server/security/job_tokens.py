"""Job tokens: the credential a job's steps get instead of the agent's own.

A job token names one job and carries an HMAC-SHA256 of it under a server secret:

    bcj_<build id>.<job id>.<base64url HMAC(secret, "<build id>\\n<job id>")>

So nothing per job is stored: the server recomputes the HMAC to verify a token, and
asks the job's build whether the job is still live (a token of a terminal job is
refused). The secret is 32 random bytes in `DATA_DIR/job-token.key` (mode 0600),
made on the first start and kept across restarts, so the tokens of jobs that survive
a restart keep working. Deleting the file and restarting the server invalidates every
job token at once (rotation).

On PostgreSQL the key is the database's (table `job_token_key`), so that a token one
replica minted is verified by every other: a job's agent and steps may reach any
replica. That replica asks the store whether the job is live when it does not run the
build itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from buildcontrol_server.security.errors import SecuritySetupError
from buildcontrol_server.security.principals import JobScope, Principal, Role
from buildcontrol_server.security.tokens import write_private

JOB_TOKEN_PREFIX = "bcj_"
KEY_FILE_NAME = "job-token.key"
_KEY_BYTES = 32
_SHAPE = re.compile(r"bcj_(b[0-9a-f]{20})\.(b[0-9a-f]{20}-j[0-9]{1,9})\.([A-Za-z0-9_-]{43})")


class JobKeyError(SecuritySetupError):
    """The job-token key file cannot be used; the message names it."""


def is_job_token(token: str) -> bool:
    return token.startswith(JOB_TOKEN_PREFIX)


def job_principal(scope: JobScope) -> Principal:
    """Named after the job; audit lines and open calls are keyed by this name."""
    return Principal(f"job:{scope.job_id}", Role.JOB, job=scope)


class JobTokens:
    def __init__(self, key: bytes) -> None:
        if len(key) < _KEY_BYTES:
            raise ValueError("a job-token key needs at least 32 bytes")
        self._key = key

    @classmethod
    def load_or_create(cls, path: Path) -> JobTokens:
        """The key in `path`, made (0600) if there is none yet."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private(path, secrets.token_hex(_KEY_BYTES) + "\n")
        return cls(read_key(path))

    def _mac(self, build_id: str, job_id: str) -> str:
        digest = hmac.new(self._key, f"{build_id}\n{job_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def mint(self, build_id: str, job_id: str) -> str:
        return f"{JOB_TOKEN_PREFIX}{build_id}.{job_id}.{self._mac(build_id, job_id)}"

    def verify(self, token: str) -> JobScope | None:
        """The job `token` names if its HMAC is right (whether the job is still live
        is for the caller to ask); None for anything else."""
        shape = _SHAPE.fullmatch(token)
        if shape is None:
            return None
        build_id, job_id, mac = shape.groups()
        if not job_id.startswith(build_id + "-"):
            return None
        if not hmac.compare_digest(mac, self._mac(build_id, job_id)):
            return None
        return JobScope(build_id, job_id)


async def _no(scope: JobScope) -> bool:
    return False  # one server: no live build elsewhere; without job ends: no tail


def new_key() -> bytes:
    return secrets.token_bytes(_KEY_BYTES)


def read_key(path: Path) -> bytes:
    """The key a key file holds; JobKeyError naming the file if it is unusable."""
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as error:
        raise JobKeyError(f"job-token key {path} is unusable: {error}") from None
    if len(key) < _KEY_BYTES:
        raise JobKeyError(f"job-token key {path} is unusable: shorter than 32 bytes")
    return key


@dataclass(frozen=True)
class JobAccess:
    """What the interceptor needs to admit job tokens."""

    tokens: JobTokens
    # Whether the job is not terminal yet, when this server runs the job's build; None
    # when it does not (replicas: another may, and only the store can say).
    is_live: Callable[[JobScope], bool | None]
    # The store's answer for a build this server does not run: True while the job is
    # not terminal. Raises DomainError (the store unreachable).
    is_live_elsewhere: Callable[[JobScope], Awaitable[bool]] = _no
    # Whether the job ended at most LOG_TAIL_SECONDS ago (its log's last bytes may
    # come after its result); asked of the store, for an UploadLogs call only.
    in_log_tail: Callable[[JobScope], Awaitable[bool]] = _no
