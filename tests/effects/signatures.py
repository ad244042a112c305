"""The verification snippet of docs/webhooks.md, run as a receiver would run it."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def verification_snippet() -> str:
    """The Python verification snippet of docs/webhooks.md, as published."""
    text = DOCS.read_text()
    found = re.search(r"```python\n(.*?)```", text, re.S)
    assert found is not None, "docs/webhooks.md has no python snippet"
    return found.group(1)


def verify_as_the_docs_say(secret: bytes, body: bytes, header: str | None) -> bool:
    namespace: dict[str, object] = {}
    exec(verification_snippet(), namespace)  # our own docs' snippet, under test
    verify = namespace["verify"]
    assert callable(verify)
    return bool(verify(secret, body, header))
