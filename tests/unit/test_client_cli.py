"""The client subcommands, run as the top-level CLI runs them (`await args.func(args)`),
against a scripted BuildControl servicer on a real grpc.aio server."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from buildcontrol.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from buildcontrol_client.cli import register

BUILD_ID = "b00000000000000000001"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class FakeBuildControl(build_control_pb2_grpc.BuildControlServicer):
    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Any] = []
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.builds: list[build_pb2.Build] = []
        self.next_page_token = ""
        self.watch_events: list[build_control_pb2.WatchBuildResponse] = []
        self.cancel_events: list[build_control_pb2.CancelResponse] = []

    async def SubmitBuild(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        build = build_pb2.Build(
            build_id=BUILD_ID, pipeline=request.pipeline, status=build_pb2.BUILD_STATUS_QUEUED
        )
        return build_control_pb2.SubmitBuildResponse(build=build)

    async def GetBuild(self, request: Any, context: Any) -> Any:
        if self.abort is not None:
            await context.abort(*self.abort)
        return build_control_pb2.GetBuildResponse(build=self.builds[0])

    async def ListBuilds(self, request: Any, context: Any) -> Any:
        return build_control_pb2.ListBuildsResponse(
            builds=self.builds, next_page_token=self.next_page_token
        )

    async def WatchBuild(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for event in self.watch_events:
            yield event

    async def Cancel(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.requests.append(request)
        if self.abort is not None:
            await context.abort(*self.abort)
        for event in self.cancel_events:
            yield event


@pytest.fixture
async def fake() -> AsyncIterator[FakeBuildControl]:
    servicer = FakeBuildControl()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    build_control_pb2_grpc.add_BuildControlServicer_to_server(servicer, server)
    servicer.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer
    await server.stop(0)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="buildcontrol")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


async def run(fake: FakeBuildControl | None, *argv: str) -> int:
    server = f"127.0.0.1:{fake.port}" if fake else f"127.0.0.1:{free_port()}"
    args = parse(*argv, "--server", server)
    code: int = await args.func(args)
    return code


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def watch(**event: Any) -> build_control_pb2.WatchBuildResponse:
    return build_control_pb2.WatchBuildResponse(**event)


async def test_submit_prints_the_build_id_and_status(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run(fake, "submit", str(EXAMPLES / "hello.yaml"))

    assert code == 0
    assert capsys.readouterr().out == f"{BUILD_ID} QUEUED\n"
    assert fake.requests[0].pipeline == "hello"


async def test_submit_of_a_bad_file_names_the_key_and_exits_4(
    fake: FakeBuildControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline: p\nstages: [{name: s, jobs: [{name: j, steps: []}]}]\n")

    code = await run(fake, "submit", str(bad))

    assert code == 4
    assert "stages[0].jobs[0].steps: needs at least one entry" in capsys.readouterr().err
    assert fake.requests == []


async def test_get_of_an_unknown_build_exits_4(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.abort = (grpc.StatusCode.NOT_FOUND, f"no build {BUILD_ID}")

    assert await run(fake, "get", BUILD_ID) == 4
    assert capsys.readouterr().err == f"error: NOT_FOUND: no build {BUILD_ID}\n"


async def test_get_prints_jobs_and_steps_with_control_characters_escaped(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    step = build_pb2.Step(index=0, command="make", status=build_pb2.STEP_STATUS_SUCCEEDED)
    step.exit_code = 0
    job = build_pb2.Job(
        job_id=f"{BUILD_ID}-j0", name="com\x1b[31mpile", status=build_pb2.JOB_STATUS_SUCCEEDED
    )
    job.steps.append(step)
    fake.builds = [
        build_pb2.Build(
            build_id=BUILD_ID,
            pipeline="hello",
            status=build_pb2.BUILD_STATUS_SUCCEEDED,
            stages=[build_pb2.Stage(name="build", jobs=[job])],
        )
    ]

    assert await run(fake, "get", BUILD_ID) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"build {BUILD_ID} hello SUCCEEDED",
        "  stage 0 build",
        f"    job {BUILD_ID}-j0 com\\x1b[31mpile SUCCEEDED",
        "      step 0 SUCCEEDED exit=0 make",
    ]
    assert "\x1b" not in out


async def test_a_server_that_is_not_there_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(None, "get", BUILD_ID) == 3
    assert capsys.readouterr().err.startswith("error: UNAVAILABLE")


async def test_list_prints_one_build_per_line_and_the_next_token_on_stderr(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.builds = [
        build_pb2.Build(build_id=BUILD_ID, pipeline="hello", status=build_pb2.BUILD_STATUS_RUNNING)
    ]
    fake.next_page_token = "next"

    assert await run(fake, "list", "--page-size", "1") == 0
    captured = capsys.readouterr()
    assert captured.out == f"{BUILD_ID} hello RUNNING\n"
    assert "--page-token next" in captured.err


async def test_watch_prints_a_line_per_event_and_exits_1_when_canceled(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.watch_events = [
        watch(snapshot=build_pb2.Build(build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_RUNNING)),
        watch(
            job_changed=build_control_pb2.JobChanged(
                job_id="j0",
                status=build_pb2.JOB_STATUS_CANCELED,
                outcome=build_pb2.JOB_OUTCOME_GRACEFUL,
            )
        ),
        watch(
            build_changed=build_control_pb2.BuildChanged(
                build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_CANCELED
            )
        ),
    ]

    assert await run(fake, "watch", BUILD_ID) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"snapshot {BUILD_ID} - RUNNING jobs=0",
        "job j0 CANCELED outcome=GRACEFUL",
        f"build {BUILD_ID} CANCELED",
    ]


async def test_watch_of_a_build_that_succeeds_exits_0(fake: FakeBuildControl) -> None:
    fake.watch_events = [
        watch(snapshot=build_pb2.Build(build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_SUCCEEDED))
    ]

    assert await run(fake, "watch", BUILD_ID) == 0


async def test_watch_that_ends_before_a_terminal_status_exits_3(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.watch_events = [
        watch(snapshot=build_pb2.Build(build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_RUNNING))
    ]

    assert await run(fake, "watch", BUILD_ID) == 3
    assert "before the build was terminal" in capsys.readouterr().err


async def test_cancel_prints_each_event_as_json_lines(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.cancel_events = [
        build_control_pb2.CancelResponse(
            accepted=build_control_pb2.CancelAccepted(
                build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_CANCELING, jobs_stopping=1
            )
        ),
        build_control_pb2.CancelResponse(
            finished=build_control_pb2.CancelFinished(
                build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_CANCELED
            )
        ),
    ]

    code = await run(fake, "cancel", BUILD_ID, "--reason", "wrong branch", "--grace", "2", "--json")

    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["accepted"]["status"] == "BUILD_STATUS_CANCELING"
    assert lines[1]["finished"]["status"] == "BUILD_STATUS_CANCELED"
    request = fake.requests[0]
    assert (request.reason, request.grace_period.seconds, request.force) == (
        "wrong branch",
        2,
        False,
    )
    assert request.requested_by  # who cancelled is always recorded


async def test_cancel_prints_plain_lines(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.cancel_events = [
        build_control_pb2.CancelResponse(
            job_stopped=build_control_pb2.JobCancelResult(
                job_id="j0",
                status=build_pb2.JOB_STATUS_CANCELED,
                outcome=build_pb2.JOB_OUTCOME_KILLED,
            )
        ),
        build_control_pb2.CancelResponse(
            finished=build_control_pb2.CancelFinished(
                build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_CANCELED
            )
        ),
    ]

    assert await run(fake, "cancel", BUILD_ID, "--force") == 0
    assert capsys.readouterr().out.splitlines() == [
        "job-stopped j0 CANCELED outcome=KILLED",
        f"finished {BUILD_ID} CANCELED jobs=0",
    ]
    assert fake.requests[0].force is True


async def test_cancel_of_a_finished_build_exits_4(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.abort = (grpc.StatusCode.FAILED_PRECONDITION, "build is SUCCEEDED")

    assert await run(fake, "cancel", BUILD_ID) == 4
    assert "build is SUCCEEDED" in capsys.readouterr().err


def test_agent_labels_may_repeat_or_be_comma_separated() -> None:
    args = parse(
        "agent", "--labels", "os=linux,arch=x86_64", "--labels", "gpu=1", "--capacity", "2"
    )

    assert args.labels == [{"os": "linux", "arch": "x86_64"}, {"gpu": "1"}]
    assert args.capacity == 2
    assert args.server == "127.0.0.1:50051"


@pytest.mark.parametrize(
    "argv",
    [
        ("agent", "--labels", "oslinux"),
        ("agent", "--capacity", "0"),
        ("cancel", BUILD_ID, "--grace", "-1"),
    ],
)
def test_bad_arguments_are_usage_errors(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse(*argv)

    assert raised.value.code == 2
