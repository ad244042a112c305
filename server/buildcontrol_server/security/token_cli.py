"""`buildcontrol token create | list | revoke`: manage the tokens of a server, in its
tokens file (SQLite, the default) or, with `--store postgresql://…`, in its database.

A new token is printed once, on stdout, and stored only as its hash. A running server
sees the change without a restart (a revoked token's open calls end within a second).
Every change is one atomic read-modify-write (the file's lock, or one transaction
that locks the token state row), so changes made at the same time all land."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from buildcontrol_server.security import agent_id_patterns, tokens
from buildcontrol_server.security.principals import TOKEN_ROLES, Principal, Role
from buildcontrol_server.security.server_security import default_tokens_file
from buildcontrol_server.security.token_sources import Edit, TokenSource, token_source
from buildcontrol_server.security.tokens import TokenEntry, TokensFileError
from buildcontrol_server.store.factory import StoreUrlError
from buildcontrol_server.store.postgres_tokens import TokenTableMissing


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = subparsers.add_parser("token", help="create, list or revoke access tokens")
    actions = token.add_subparsers(dest="token_action", required=True)

    create = actions.add_parser("create", help="add a token and print it (once)")
    _add_source(create)
    create.add_argument("--name", required=True, help="the principal (recorded as submitter)")
    create.add_argument("--role", required=True, choices=[role.value for role in TOKEN_ROLES])
    create.add_argument(
        "--agent-id",
        help="for --role agent: the agent id it connects as, or a pattern of ids "
        "(ci-*, %%hostname, a|b)",
    )
    create.set_defaults(func=_create)

    listing = actions.add_parser("list", help="names, roles and agent ids (never tokens)")
    _add_source(listing)
    listing.set_defaults(func=_list)

    revoke = actions.add_parser("revoke", help="remove every token of a principal")
    _add_source(revoke)
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(func=_revoke)


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--tokens-file", type=Path, help="default DATA_DIR/tokens.json")
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the server's postgresql://… store: its tokens are in the database",
    )


def _source(args: argparse.Namespace) -> TokenSource:
    if args.store and args.tokens_file:
        raise TokensFileError("--tokens-file or --store, not both")
    return token_source(args.tokens_file, default_tokens_file(args.data_dir), args.store)


def _fail(message: str) -> int:
    print(f"buildcontrol: {message}", file=sys.stderr)
    return 1


# What a source may raise besides TokensFileError: a file system's or a database's
# refusal (a lost connection is an OSError), a bad URL, a database no server set up.
_SOURCE_ERRORS = (TokensFileError, OSError, StoreUrlError, TokenTableMissing)


async def _change(args: argparse.Namespace, edit: Callable[[TokenSource], Edit]) -> str | None:
    """Apply the edit that `edit` makes for the source of `args`; what went wrong."""
    try:
        source = _source(args)
    except _SOURCE_ERRORS as error:
        return str(error)
    try:
        await source.change(edit(source))
    except _SOURCE_ERRORS as error:
        return str(error)
    finally:
        await source.close()
    return None


async def _create(args: argparse.Namespace) -> int:
    role = Role(args.role)
    if role is Role.AGENT and not args.agent_id:
        return _fail("an agent token needs --agent-id")
    if role is not Role.AGENT and args.agent_id:
        return _fail("--agent-id is for agent tokens only")
    problem = agent_id_patterns.problem(args.agent_id) if args.agent_id else None
    if problem is not None:
        return _fail(problem)
    secret = tokens.new_token()
    entry = TokenEntry(Principal(args.name, role, args.agent_id), tokens.token_hash(secret))

    def add(entries: list[TokenEntry], _: bool) -> Sequence[TokenEntry]:
        tokens.check_new_name(args.name, role, entries)
        return [*entries, entry]

    failed = await _change(args, lambda _: add)
    if failed is not None:
        return _fail(failed)
    # Printed only once its hash is stored.
    print(secret, flush=True)
    return 0


async def _list(args: argparse.Namespace) -> int:
    try:
        source = _source(args)
        try:
            entries = await source.read()
        finally:
            await source.close()
    except _SOURCE_ERRORS as error:
        return _fail(str(error))
    for entry in entries:
        agent = f" agent_id={entry.principal.agent_id}" if entry.principal.agent_id else ""
        print(f"{entry.principal.name} {entry.principal.role}{agent}", flush=True)
    return 0


async def _revoke(args: argparse.Namespace) -> int:
    removed: list[TokenEntry] = []

    def remover(source: TokenSource) -> Edit:
        def remove(entries: list[TokenEntry], _: bool) -> Sequence[TokenEntry]:
            kept = [entry for entry in entries if entry.principal.name != args.name]
            if len(kept) == len(entries):
                where = source.description.removeprefix("tokens file ")
                raise TokensFileError(f"no token of {args.name[:100]!r} in {where}")
            removed[:] = [entry for entry in entries if entry not in kept]
            return kept

        return remove

    failed = await _change(args, remover)
    if failed is not None:
        return _fail(failed)
    # A running server ends the open calls of these tokens within a second.
    print(f"revoked {len(removed)} token(s) of {args.name}", flush=True)
    return 0
