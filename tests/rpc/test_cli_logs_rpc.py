"""`buildcontrol logs` and `watch --logs` against a real server and a real agent: one
job's log as printed, several jobs prefixed by name, --since-offset, --json, ANSI
stripped when piped, a missing job exits 4."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from buildcontrol_client.cli import register
from buildcontrol_proto.v1 import build_control_pb2

from tests.rpc.job_log_calls import agent_for, ended
from tests.support.servers import Running


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="buildcontrol")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


async def cli(server: Running, *argv: str) -> int:
    args = parse(*argv, "--server", server.target)
    code: int = await args.func(args)
    return code


def two_jobs() -> build_control_pb2.SubmitBuildRequest:
    def job(name: str, command: str) -> build_control_pb2.JobSpec:
        return build_control_pb2.JobSpec(
            name=name, steps=[build_control_pb2.StepSpec(name="print", command=command)]
        )

    return build_control_pb2.SubmitBuildRequest(
        pipeline="logs",
        stages=[
            build_control_pb2.StageSpec(
                name="s",
                jobs=[
                    job("compile", r"printf 'a1\n\033[32mgreen\033[0m\n\377end'"),
                    job("test", "echo t1; echo t2"),
                ],
            )
        ],
    )


async def finished_build(server: Running, tmp_path: Path) -> str:
    build = (await server.stub.SubmitBuild(two_jobs())).build
    async with agent_for(server, tmp_path / "work"):
        await ended(server, build.build_id)
    return build.build_id


async def test_logs_of_one_job_print_it_as_it_is_without_ansi_when_piped(
    server: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_id = await finished_build(server, tmp_path)
    assert await cli(server, "logs", build_id, "compile") == 0
    assert capsys.readouterr().out == "--- step 0: print\na1\ngreen\n\ufffdend"


async def test_logs_of_a_build_prefix_each_line_with_its_job(
    server: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_id = await finished_build(server, tmp_path)
    assert await cli(server, "logs", build_id) == 0
    assert capsys.readouterr().out.splitlines() == [
        "compile | --- step 0: print",
        "compile | a1",
        "compile | green",
        "compile | \ufffdend",
        "test    | --- step 0: print",
        "test    | t1",
        "test    | t2",
    ]


async def test_logs_follow_from_an_offset_and_as_json(
    server: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_id = await finished_build(server, tmp_path)
    assert await cli(server, "logs", build_id, "test", "-f", "--since-offset", "18") == 0
    assert capsys.readouterr().out == "t1\nt2\n"
    assert await cli(server, "logs", build_id, "compile", "--json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "".join(line["text"] for line in lines) == "--- step 0: print\na1\ngreen\n\ufffdend"
    assert lines[0]["offset"] == "0"


async def test_logs_of_a_job_the_build_does_not_have_exit_4(
    server: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_id = await finished_build(server, tmp_path)
    assert await cli(server, "logs", build_id, "deploy") == 4
    assert "NOT_FOUND" in capsys.readouterr().err
    assert await cli(server, "logs", build_id, "test", "--since-offset", "-1") == 4


async def test_watch_with_logs_interleaves_output_with_state_changes(
    server: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = (await server.stub.SubmitBuild(two_jobs())).build
    async with agent_for(server, tmp_path / "work"):
        assert await cli(server, "watch", build.build_id, "--logs") == 0
    out = capsys.readouterr().out.splitlines()
    assert "test    | t2" in out and "compile | a1" in out
    assert any("SUCCEEDED" in line and "|" not in line for line in out)
