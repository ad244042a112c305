"""Signed webhooks against real receivers: each endpoint's requests carry the HMAC-SHA256
of the exact body with that endpoint's secret (and only that endpoint's), a receiver
verifies it with the snippet of docs/webhooks.md, and the secret shows up nowhere."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import sys
from pathlib import Path

import pytest
from buildcontrol_server.effects.webhook_signing import (
    SIGNATURE_HEADER,
    WebhookSecretError,
    load_secrets,
)
from buildcontrol_server.effects.webhooks import WebhookNotifier

from tests.support.webhook_receiver import MakeReceiver

from .samples import sample_record

FAST = {"base_delay": 0.001, "max_delay": 0.01}
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


async def test_each_endpoint_gets_the_signature_of_the_body_with_its_own_secret(
    receiver_factory: MakeReceiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    signed, other, unsigned = [await receiver_factory(200) for _ in range(3)]
    (tmp_path / "hook0.secret").write_text("  s3cret-zero\n")
    secrets = load_secrets(
        ["0=file:" + str(tmp_path / "hook0.secret"), "1=env:HOOK1_SECRET"],
        3,
        {"HOOK1_SECRET": "s3cret-one"},
    )
    notifier = WebhookNotifier([signed.url, other.url, unsigned.url], secrets=secrets, **FAST)
    await notifier.start()
    try:
        notifier.notify(sample_record())
        requests = [await r.next_request() for r in (signed, other, unsigned)]
        await asyncio.wait_for(notifier.join(), 5)
    finally:
        await notifier.stop(timeout=1)

    for request, secret in zip(requests[:2], (b"s3cret-zero", b"s3cret-one"), strict=True):
        header = request.headers[SIGNATURE_HEADER]
        expected = "sha256=" + hmac.new(secret, request.body, hashlib.sha256).hexdigest()
        assert header == expected
        assert verify_as_the_docs_say(secret, request.body, header)
    # Not the other endpoint's secret, not a changed body, not a missing header.
    first = requests[0]
    assert not verify_as_the_docs_say(b"s3cret-one", first.body, first.headers[SIGNATURE_HEADER])
    assert not verify_as_the_docs_say(
        b"s3cret-zero", first.body + b" ", first.headers[SIGNATURE_HEADER]
    )
    assert SIGNATURE_HEADER not in requests[2].headers
    assert not verify_as_the_docs_say(b"s3cret-zero", requests[2].body, None)
    assert "s3cret" not in caplog.text
    assert "s3cret" not in repr(secrets)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("0=s3cret-inline", "expected N=file:PATH or N=env:NAME"),
        ("x=env:HOOK", "expected N=file:PATH"),
        ("0=env:", "expected N=file:PATH"),
        ("2=env:HOOK", "webhook #2 does not exist (2 configured)"),
        ("0=env:UNSET_HOOK_SECRET", "variable UNSET_HOOK_SECRET is not set"),
        ("0=env:EMPTY_HOOK", "the secret is empty"),
        ("1=file:/nonexistent/hook.secret", "cannot read /nonexistent/hook.secret"),
    ],
)
def test_a_secret_that_cannot_be_used_is_refused_without_showing_it(
    spec: str, problem: str
) -> None:
    with pytest.raises(WebhookSecretError) as raised:
        load_secrets([spec], 2, {"HOOK": "s3cret", "EMPTY_HOOK": "  \n"})
    assert problem in str(raised.value)
    assert "s3cret" not in str(raised.value).replace("s3cret-inline", "")


def test_two_secrets_for_one_endpoint_are_refused() -> None:
    with pytest.raises(WebhookSecretError, match="webhook #0 has two secrets"):
        load_secrets(["0=env:A", "0=env:B"], 1, {"A": "a", "B": "b"})


async def test_serve_with_a_bad_secret_exits_1_with_one_line(tmp_path: Path) -> None:
    cli = str(Path(sys.executable).with_name("buildcontrol"))
    process = await asyncio.create_subprocess_exec(
        cli,
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        "127.0.0.1:0",
        "--metrics-port",
        "-1",
        "--webhook-url",
        "http://127.0.0.1:9/hook",
        "--webhook-secret",
        "0=env:BUILDCONTROL_TEST_UNSET_SECRET",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("BUILDCONTROL_")},
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert lines == [
        "buildcontrol: --webhook-secret: webhook #0: variable "
        "BUILDCONTROL_TEST_UNSET_SECRET is not set"
    ]
