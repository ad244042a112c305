"""Bearer tokens for the client and the agent: where they come from, and the metadata
that carries them (`authorization: Bearer TOKEN`, as the server's interceptor reads it).

A server with authentication on (the default) creates DATA_DIR/admin.token and
DATA_DIR/agent.token on its first start; point `--token-file` at one, or set
BUILDCONTROL_TOKEN.
"""

from __future__ import annotations

import os
from pathlib import Path

TOKEN_VARIABLE = "BUILDCONTROL_TOKEN"

Metadata = tuple[tuple[str, str], ...]


class TokenFileError(ValueError):
    """A token file that was named but holds no token."""


def auth_metadata(token: str | None) -> Metadata:
    """The call metadata for `token`; empty without one (a server with auth off)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def read_token(token_file: Path | None) -> str | None:
    """The token from `token_file`, else from $BUILDCONTROL_TOKEN, else None.

    Raises OSError for a file that cannot be read and TokenFileError for an empty one: a
    token the user named but that cannot be used must not silently become "no token".
    """
    if token_file is not None:
        token = token_file.read_text(encoding="utf-8").strip()
        if not token:
            raise TokenFileError(f"{token_file} holds no token")
        return token
    return os.environ.get(TOKEN_VARIABLE, "").strip() or None
