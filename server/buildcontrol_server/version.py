"""The installed version, from the package metadata (pyproject.toml is its one source)."""

from __future__ import annotations

from functools import cache
from importlib import metadata


@cache
def version() -> str:
    try:
        return metadata.version("buildcontrol")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"
