"""Start-up failures of the security setup: `serve` prints the message and exits 1."""

from __future__ import annotations


class SecuritySetupError(Exception):
    """A tokens file or TLS file the server cannot use; the message names the file."""
