"""`buildcontrol token create | list | revoke`: manage the tokens file of a server.

A new token is printed once, on stdout, and stored only as its hash. A running server
re-reads the file when it changes, so a new or revoked token counts at the next call
(and a revoked token's open calls end within a second). Every change holds the file's
lock (tokens.locked) around its read-modify-write, so changes made at the same time
all land."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from buildcontrol_server.security import tokens
from buildcontrol_server.security.principals import TOKEN_ROLES, Principal, Role
from buildcontrol_server.security.server_security import default_tokens_file


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = subparsers.add_parser("token", help="create, list or revoke access tokens")
    actions = token.add_subparsers(dest="token_action", required=True)

    create = actions.add_parser("create", help="add a token and print it (once)")
    _add_file(create)
    create.add_argument("--name", required=True, help="the principal (recorded as submitter)")
    create.add_argument("--role", required=True, choices=[role.value for role in TOKEN_ROLES])
    create.add_argument("--agent-id", help="for --role agent: the one agent id it connects as")
    create.set_defaults(func=_create)

    listing = actions.add_parser("list", help="names, roles and agent ids (never tokens)")
    _add_file(listing)
    listing.set_defaults(func=_list)

    revoke = actions.add_parser("revoke", help="remove every token of a principal")
    _add_file(revoke)
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(func=_revoke)


def _add_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--tokens-file", type=Path, help="default DATA_DIR/tokens.json")


def _path(args: argparse.Namespace) -> Path:
    path: Path = args.tokens_file or default_tokens_file(args.data_dir)
    return path


def _fail(message: str) -> int:
    print(f"buildcontrol: {message}", file=sys.stderr)
    return 1


async def _create(args: argparse.Namespace) -> int:
    role = Role(args.role)
    if role is Role.AGENT and not args.agent_id:
        return _fail("an agent token needs --agent-id")
    if role is not Role.AGENT and args.agent_id:
        return _fail("--agent-id is for agent tokens only")
    path = _path(args)
    try:
        with tokens.locked(path):
            entries = tokens.read(path) if path.exists() else []
            tokens.check_new_name(args.name, role, entries)
            secret = tokens.new_token()
            principal = Principal(args.name, role, args.agent_id)
            entry = tokens.TokenEntry(principal, tokens.token_hash(secret))
            tokens.write(path, [*entries, entry])
    except (tokens.TokensFileError, OSError) as error:
        return _fail(str(error))
    # Printed only once the file holding its hash is in place.
    print(secret, flush=True)
    return 0


async def _list(args: argparse.Namespace) -> int:
    try:
        entries = tokens.read(_path(args))
    except tokens.TokensFileError as error:
        return _fail(str(error))
    for entry in entries:
        agent = f" agent_id={entry.principal.agent_id}" if entry.principal.agent_id else ""
        print(f"{entry.principal.name} {entry.principal.role}{agent}", flush=True)
    return 0


async def _revoke(args: argparse.Namespace) -> int:
    path = _path(args)
    try:
        with tokens.locked(path):
            entries = tokens.read(path)
            kept = [entry for entry in entries if entry.principal.name != args.name]
            if len(kept) == len(entries):
                return _fail(f"no token of {args.name[:100]!r} in {path}")
            tokens.write(path, kept)
    except (tokens.TokensFileError, OSError) as error:
        return _fail(str(error))
    # A running server ends the open calls of these tokens within a second.
    print(f"revoked {len(entries) - len(kept)} token(s) of {args.name}", flush=True)
    return 0
