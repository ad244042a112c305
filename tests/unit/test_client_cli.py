"""The client subcommands, run as the top-level CLI runs them (`await args.func(args)`),
against a scripted BuildControl servicer on a real grpc.aio server."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from tests.unit.fake_build_control import (
    BUILD_ID,
    EXAMPLES,
    FakeBuildControl,
    parse,
    stocked,
    watch,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBuildControl]:
    servicer = FakeBuildControl()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    build_control_pb2_grpc.add_BuildControlServicer_to_server(servicer, server)
    servicer.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer
    await server.stop(0)


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


async def test_submit_piped_prints_only_the_build_id(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run(fake, "submit", str(EXAMPLES / "hello.yaml"))

    assert code == 0
    assert capsys.readouterr().out == f"{BUILD_ID}\n"  # B=$(buildcontrol submit f.yaml)
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


async def test_watch_prints_a_line_per_event_and_exits_5_when_canceled(
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

    assert await run(fake, "watch", BUILD_ID) == 5
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


async def test_watch_that_ends_before_a_terminal_status_exits_3_once_reconnecting_gives_up(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.watch_events = [
        watch(snapshot=build_pb2.Build(build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_RUNNING))
    ]

    assert await run(fake, "watch", BUILD_ID, "--reconnect-for", "0") == 3
    assert "before the build was terminal" in capsys.readouterr().err


async def test_watch_reopens_a_stream_that_ended_early_and_follows_the_fresh_snapshot(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    running = build_pb2.Build(build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_RUNNING)
    done = build_pb2.Build(build_id=BUILD_ID, status=build_pb2.BUILD_STATUS_SUCCEEDED)
    fake.watch_streams = [[watch(snapshot=running)], [watch(snapshot=done)]]

    assert await run(fake, "watch", BUILD_ID) == 0
    err = capsys.readouterr().err
    assert "reconnecting in" in err and "fresh snapshot" in err


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


# ---- every command: --json, exit codes, help ----------------------------------------


EVERY_COMMAND = [
    ("submit", str(EXAMPLES / "hello.yaml")),
    ("submit", str(EXAMPLES / "hello.yaml"), "--watch"),
    ("get", BUILD_ID),
    ("list",),
    ("watch", BUILD_ID),
    ("cancel", BUILD_ID),
    ("cancel-builds", "--ids", BUILD_ID),
    ("agents",),
]


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=" ".join)
async def test_json_output_is_one_object_per_line(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    stocked(fake)

    await run(fake, *argv, "--json")

    lines = capsys.readouterr().out.splitlines()
    assert lines
    assert all(isinstance(json.loads(line), dict) for line in lines)


async def test_json_of_an_agent_keeps_fields_at_their_defaults(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.agents = [build_control_pb2.Agent(agent_id="a1")]

    await run(fake, "agents", "--json")

    agent = json.loads(capsys.readouterr().out)
    assert (agent["connected"], agent["jobIds"], agent["suspect"]) == (False, [], False)


@pytest.mark.parametrize(
    ("terminal", "code"),
    [
        (build_pb2.BUILD_STATUS_SUCCEEDED, 0),
        (build_pb2.BUILD_STATUS_FAILED, 1),
        (build_pb2.BUILD_STATUS_CANCELED, 5),
    ],
)
@pytest.mark.parametrize(
    "argv", [("watch", BUILD_ID), ("submit", str(EXAMPLES / "hello.yaml"), "--watch")]
)
async def test_watching_exits_with_the_documented_code_for_each_ending(
    fake: FakeBuildControl,
    terminal: build_pb2.BuildStatus,
    code: int,
    argv: tuple[str, ...],
) -> None:
    stocked(fake, terminal)

    assert await run(fake, *argv) == code


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (grpc.StatusCode.NOT_FOUND, 4),
        (grpc.StatusCode.INVALID_ARGUMENT, 4),
        (grpc.StatusCode.FAILED_PRECONDITION, 4),
        (grpc.StatusCode.UNAVAILABLE, 3),
        (grpc.StatusCode.UNAUTHENTICATED, 6),
        (grpc.StatusCode.PERMISSION_DENIED, 6),
        (grpc.StatusCode.INTERNAL, 1),
    ],
)
async def test_server_errors_exit_with_the_documented_code(
    fake: FakeBuildControl, status: grpc.StatusCode, code: int
) -> None:
    fake.abort = (status, "x")

    assert await run(fake, "get", BUILD_ID) == code
    assert await run(fake, "cancel", BUILD_ID) == code


async def test_cancel_builds_prints_what_was_accepted_each_build_and_the_summary(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    stocked(fake)

    code = await run(fake, "cancel-builds", "--pipeline", "hello", "--force", "--grace", "1")

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "accepted matched=1 committed=1 already_canceling=0 not_cancelable=0 not_found=0",
        f"build {BUILD_ID} CANCELED",
        "summary matched=1 canceled=1 already_canceling=0 not_cancelable=0 not_found=0",
    ]
    request = fake.requests[0]
    assert (request.pipeline, request.force, request.grace_period.seconds) == ("hello", True, 1)


async def test_cancel_builds_exits_4_when_a_named_build_was_not_found(
    fake: FakeBuildControl,
) -> None:
    summary = build_control_pb2.CancelBuildsSummary(matched=0, not_found=1)
    fake.cancel_builds_events = [build_control_pb2.CancelBuildsResponse(summary=summary)]

    assert await run(fake, "cancel-builds", "--ids", BUILD_ID) == 4


async def test_agents_prints_one_line_per_agent(
    fake: FakeBuildControl, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.agents = [
        build_control_pb2.Agent(
            agent_id="a1", capacity=2, connected=True, job_ids=["j1"], labels={"os": "linux"}
        ),
        build_control_pb2.Agent(agent_id="a2", capacity=1, suspect=True),
    ]

    assert await run(fake, "agents") == 0
    assert capsys.readouterr().out.splitlines() == [
        "a1 connected capacity=2 jobs=j1 labels=os=linux",
        "a2 disconnected capacity=1 jobs=- suspect",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ("cancel-builds",),  # a selector is required
        ("cancel-builds", "--pipeline", "p", "--concurrency-group", "g"),  # only one
        ("watch",),
    ],
)
def test_missing_or_conflicting_arguments_exit_2(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse(*argv)

    assert raised.value.code == 2


@pytest.mark.parametrize(
    "command", ["agent", "submit", "get", "list", "watch", "cancel", "cancel-builds", "agents"]
)
def test_help_shows_an_example_and_the_exit_codes(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        parse(command, "--help")

    assert raised.value.code == 0
    text = capsys.readouterr().out
    assert f"example:\n  buildcontrol {command}" in text
    for code in ("0", "1", "2", "3", "4", "5", "6"):
        assert f"\n    {code}  " in text
    assert "--json" in text


async def test_the_token_comes_from_the_file_or_the_environment(
    fake: FakeBuildControl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stocked(fake)
    token_file = tmp_path / "admin.token"
    token_file.write_text("bct_from_file\n")
    monkeypatch.setenv("BUILDCONTROL_TOKEN", "bct_from_env")

    assert await run(fake, "get", BUILD_ID) == 0
    assert fake.metadata["authorization"] == "Bearer bct_from_env"
    assert await run(fake, "get", BUILD_ID, "--token-file", str(token_file)) == 0
    assert fake.metadata["authorization"] == "Bearer bct_from_file"  # the flag wins

    monkeypatch.delenv("BUILDCONTROL_TOKEN")
    assert await run(fake, "get", BUILD_ID) == 0
    assert "authorization" not in fake.metadata


async def test_an_empty_token_file_is_an_error_not_an_anonymous_call(
    fake: FakeBuildControl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.token"
    empty.write_text("\n")

    assert await run(fake, "get", BUILD_ID, "--token-file", str(empty)) == 4
    assert "holds no token" in capsys.readouterr().err


def test_agent_json_logs_are_one_object_per_record() -> None:
    import logging

    from buildcontrol_client.cli_agent import JsonLogFormatter

    record = logging.LogRecord(
        "buildcontrol.agent", logging.INFO, __file__, 1, "job %s", ("j1",), None
    )

    line = JsonLogFormatter().format(record)

    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "INFO",
        "buildcontrol.agent",
        "job j1",
    )
    assert entry["time"].endswith("Z") and "\n" not in line
    assert parse("agent", "--json").json is True
