"""The tokens file: which bearer tokens exist, as SHA-256 hashes only, each with a
principal name and a role (or the agent id of an agent token).

    {"tokens": [
      {"name": "admin",   "role": "admin",    "sha256": "9f86d0…"},
      {"name": "alice",   "role": "operator", "sha256": "…"},
      {"name": "agent-1", "role": "agent",    "agent_id": "agent-1", "sha256": "…"},
      {"name": "hosts",   "role": "agent",    "agent_id": "%hostname|%hostname-*", …}]}

An agent token's `agent_id` is a pattern of the ids it may connect as
(agent_id_patterns.py): an exact id, or alternatives with `*` and `%hostname`.

The file is JSON as written by the server; YAML is read too (JSON is YAML), for people
who edit it by hand. A plain SHA-256 is enough because every token is 256 random bits:
nobody can guess a preimage, so a slow password hash (bcrypt, argon2) would only add
milliseconds to every RPC. Lookups hash the presented token and compare it with every
entry in constant time (`hmac.compare_digest`, no early exit), so the time taken does
not tell how much of a hash matched.

Where the tokens live (this file, or the database on PostgreSQL) is token_sources.py;
the tokens in force, re-read when they change, token_registry.py."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from buildcontrol_server.security import agent_id_patterns
from buildcontrol_server.security.errors import SecuritySetupError
from buildcontrol_server.security.principals import TOKEN_ROLES, Principal, Role

# A prefix makes a leaked token recognizable (secret scanners, log reviews).
TOKEN_PREFIX = "bct_"
# The name of the first-start agent token, and the agent ids it accepts: any agent
# started on the server's host without --agent-id (its default id is derived from the
# host name), with no other setup.
BOOTSTRAP_AGENT_NAME = "bootstrap-agent"
BOOTSTRAP_AGENT_IDS = agent_id_patterns.BOOTSTRAP_PATTERN
ADMIN_TOKEN_FILE = "admin.token"
AGENT_TOKEN_FILE = "agent.token"
SECRET_FILE_MODE = 0o600


class TokensFileError(SecuritySetupError):
    """The tokens file cannot be used; the message says why (never a token)."""


@dataclass(frozen=True)
class TokenEntry:
    principal: Principal
    sha256: str


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _entry(raw: Any, position: int) -> TokenEntry:
    where = f"tokens[{position}]"
    if not isinstance(raw, dict):
        raise TokensFileError(f"{where}: expected a mapping")
    name, role_name, digest = raw.get("name"), raw.get("role"), raw.get("sha256")
    agent_id = raw.get("agent_id")
    if not isinstance(name, str) or not name.strip():
        raise TokensFileError(f"{where}.name: must be a non-empty string")
    role = next((r for r in TOKEN_ROLES if r.value == role_name), None)
    if role is None:
        choices = ", ".join(r.value for r in TOKEN_ROLES)
        raise TokensFileError(f"{where}.role: {role_name!r} is not one of {choices}")
    if role is Role.AGENT:
        if not isinstance(agent_id, str) or not agent_id:
            raise TokensFileError(f"{where}.agent_id: an agent token needs its agent id")
        problem = agent_id_patterns.problem(agent_id)
        if problem is not None:
            raise TokensFileError(f"{where}.agent_id: {problem}")
    elif agent_id is not None:
        raise TokensFileError(f"{where}.agent_id: only agent tokens have one")
    if not isinstance(digest, str) or len(digest) != 64:
        raise TokensFileError(f"{where}.sha256: must be 64 hex digits")
    try:
        bytes.fromhex(digest)
    except ValueError:
        raise TokensFileError(f"{where}.sha256: must be 64 hex digits") from None
    return TokenEntry(Principal(name, role, agent_id), digest.lower())


def parse(text: str) -> list[TokenEntry]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TokensFileError(f"not JSON or YAML: {error}") from None
    if document is None:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("tokens", []), list):
        raise TokensFileError('expected {"tokens": [...]}')
    return entries_of(document.get("tokens", []))


def entries_of(raw_entries: list[Any]) -> list[TokenEntry]:
    """Entries from their raw mappings (a file's list, a database's rows), checked."""
    entries = [_entry(raw, n) for n, raw in enumerate(raw_entries)]
    seen: set[str] = set()
    for n, entry in enumerate(entries):
        if entry.sha256 in seen:
            raise TokensFileError(f"tokens[{n}].sha256: the same token appears twice")
        seen.add(entry.sha256)
    return entries


def read(path: Path) -> list[TokenEntry]:
    try:
        text = path.read_text()
    except OSError as error:
        raise TokensFileError(f"cannot read {path}: {error.strerror}") from None
    try:
        return parse(text)
    except TokensFileError as error:
        raise TokensFileError(f"{path}: {error}") from None


def _document(entries: Iterable[TokenEntry]) -> str:
    rows = []
    for entry in entries:
        row: dict[str, str] = {"name": entry.principal.name, "role": entry.principal.role.value}
        if entry.principal.agent_id is not None:
            row["agent_id"] = entry.principal.agent_id
        row["sha256"] = entry.sha256
        rows.append(row)
    return json.dumps({"tokens": rows}, indent=2) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically: a reader (or a crash) sees
    the old file or the new one, never half of it, and never a moment of wider mode."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write(path: Path, entries: Iterable[TokenEntry]) -> None:
    write_private(path, _document(entries))


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the tokens file `path` (a `.lock` file beside it)
    for a read-modify-write: two `token` commands at once must not both read the old
    file and each write it without the other's change. Readers need no lock: every
    write replaces the file whole (write_private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, SECRET_FILE_MODE)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # released when the descriptor closes
        yield
    finally:
        os.close(descriptor)


# Printable ASCII without spaces or ':' (job principals are named "job:<job id>"):
# a name shows up in audit lines and as a build's submitter, and must not be able to
# forge either.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
# Names the server itself uses for whoever did something: never a token's.
_RESERVED_NAMES = frozenset({"anonymous", "server", "system", "job"})


def check_new_name(name: str, role: Role, entries: Iterable[TokenEntry]) -> None:
    """Refuse (TokensFileError) a name a new token may not have: one with control
    characters or other unusual characters, one that another token already has, one
    that imitates a role (`admin` for an operator's token) or the server itself."""
    if not _NAME.fullmatch(name):
        raise TokensFileError(
            f"name {name[:100]!r}: use 1-100 letters, digits and . _ @ + - (starting "
            f"with a letter or digit)"
        )
    folded = name.casefold()
    if folded in _RESERVED_NAMES:
        raise TokensFileError(f"name {name!r} is reserved for the server's own records")
    imitated = next((r for r in Role if r.value == folded), None)
    if imitated is not None and not (imitated is role and name == role.value):
        raise TokensFileError(f"name {name!r} imitates the role {imitated.value!r}")
    if any(entry.principal.name.casefold() == folded for entry in entries):
        raise TokensFileError(f"a token named {name!r} exists already (revoke it first)")
