"""The Python CLI and the Node.js scripts print the same JSON for the same thing (proto3
JSON mapping: lowerCamelCase names, enums by name, timestamps and durations as strings,
fields without presence at their defaults), checked on a real server's builds."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2_grpc

from tests.support.pipelines import pipeline
from tests.support.processes import BUILDCONTROL, serve

ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = ROOT / "clients" / "node" / "bin"
WAIT = 30.0


async def output(*argv: str, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode in (0, 5), err.decode()  # 5: the build is CANCELED
    return out.decode()


def node() -> str:
    found = shutil.which("node")
    if found is None or not (NODE_BIN.parent / "node_modules").exists():
        if os.environ.get("CI"):
            pytest.fail("node and clients/node/node_modules are needed in CI")
        pytest.skip("node or clients/node/node_modules missing (make node-test installs them)")
    return found


async def test_watch_and_cancel_json_lines_are_the_same_in_both_clients(tmp_path: Path) -> None:
    node_binary = node()
    async with serve(tmp_path / "data") as server:
        env = {"BUILDCONTROL_ADDR": server.target}
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            request = pipeline(jobs=2, labels={"os": "linux"})
            request.stages[0].jobs[0].env["OCT"] = "0755"
            request.stages[0].jobs[0].timeout.FromSeconds(90)
            build = (await stub.SubmitBuild(request)).build
        # No agent: the cancel finishes at once (NEVER_STARTED), so both clients read
        # the same terminal build afterwards.
        await output(*BUILDCONTROL, "cancel", build.build_id, "--grace", "2s", env=env)
        python_watch = await output(*BUILDCONTROL, "watch", build.build_id, "--json", env=env)
        node_watch = await output(
            node_binary, str(NODE_BIN / "watch.js"), build.build_id, "--json", env=env
        )
        assert [json.loads(line) for line in node_watch.splitlines()] == [
            json.loads(line) for line in python_watch.splitlines()
        ]
        # A cancel of a CANCELED build answers its finished event: the same in both.
        python_cancel = await output(*BUILDCONTROL, "cancel", build.build_id, "--json", env=env)
        node_cancel = await output(
            node_binary, str(NODE_BIN / "cancel.js"), build.build_id, "--json", env=env
        )
        assert json.loads(node_cancel) == json.loads(python_cancel)
    snapshot = json.loads(python_watch.splitlines()[0])["snapshot"]
    assert snapshot["status"] == "BUILD_STATUS_CANCELED"
    assert snapshot["createdAt"].endswith("Z")  # a timestamp string, not an object
    assert snapshot["cancel"]["gracePeriodSeconds"] == 2.0
