"""How the CLI prints: plain lines with no control characters when piped (the real
command as a process), and the live picture on a terminal (the model, and rich drawing
it on a console that claims to be a terminal)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
from buildcontrol_client.cli_live import BuildProgress, LiveView
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from rich.console import Console

from tests.unit.fake_build_control import BUILD_ID, EXAMPLES, FakeBuildControl, stocked, watch

CLI = [sys.executable, "-m", "buildcontrol_cli"]
# Anything below space but the newline, and DEL: what could move a cursor or recolor.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
EVIL = "name\x1b[2J\x1b[31m\r\x07"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBuildControl]:
    servicer = FakeBuildControl()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    build_control_pb2_grpc.add_BuildControlServicer_to_server(servicer, server)
    servicer.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer
    await server.stop(0)


def poisoned(fake: FakeBuildControl) -> None:
    """Every text the server sends carries escape sequences and control characters."""
    stocked(fake)
    build = fake.builds[0]
    build.pipeline = EVIL
    build.stages[0].name = EVIL
    build.stages[0].jobs[0].name = EVIL
    build.stages[0].jobs[0].steps.add(index=0, command=EVIL)
    cancel = build_pb2.CancelInfo(reason=EVIL, requested_by=EVIL)
    build.cancel.CopyFrom(cancel)
    fake.watch_events.insert(0, watch(snapshot=build))
    fake.watch_events[1:1] = [
        watch(job_changed=build_control_pb2.JobChanged(job_id="j", agent_id=EVIL)),
        watch(build_changed=build_control_pb2.BuildChanged(build_id=BUILD_ID, cancel=cancel)),
    ]
    fake.cancel_events[0].accepted.cancel.CopyFrom(cancel)
    fake.agents[0].agent_id = EVIL
    fake.agents[0].labels["k"] = EVIL


async def run_piped(fake: FakeBuildControl, *argv: str) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *argv,
        "--server",
        f"127.0.0.1:{fake.port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "TERM": "xterm-256color"},  # a terminal type, no tty
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ("get", BUILD_ID),
        ("list",),
        ("watch", BUILD_ID),
        ("cancel", BUILD_ID),
        ("cancel-builds", "--ids", BUILD_ID),
        ("agents",),
        ("submit", str(EXAMPLES / "hello.yaml"), "--watch"),
    ],
    ids=" ".join,
)
async def test_piped_output_has_no_control_characters(
    fake: FakeBuildControl, argv: tuple[str, ...]
) -> None:
    poisoned(fake)

    code, out, err = await run_piped(fake, *argv)

    assert code in (0, 5), err.decode()
    assert out.count(b"\n") >= 1
    assert not CONTROL.search(out.decode()), out
    assert "\\x1b[2J" in out.decode() or argv[0] in ("cancel-builds", "submit")  # escaped


async def test_piped_json_parses_line_by_line_and_errors_go_to_stderr(
    fake: FakeBuildControl,
) -> None:
    poisoned(fake)

    code, out, _ = await run_piped(fake, "watch", BUILD_ID, "--json")
    assert code == 5
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert events[0]["snapshot"]["pipeline"] == EVIL  # JSON carries the text as it is
    assert not CONTROL.search(out.decode())  # ... escaped by JSON itself

    fake.abort = (grpc.StatusCode.NOT_FOUND, f"no build {EVIL}")
    code, out, err = await run_piped(fake, "get", BUILD_ID, "--json")
    assert (code, out) == (4, b"")
    assert err.decode().startswith("error: NOT_FOUND: no build name\\x1b")


async def test_an_unreachable_server_exits_3_as_a_process(fake: FakeBuildControl) -> None:
    fake.port = 1  # nothing listens there

    code, _, err = await run_piped(fake, "agents")

    assert code == 3
    assert err.startswith(b"error: UNAVAILABLE")


async def test_usage_errors_exit_2_as_a_process(fake: FakeBuildControl) -> None:
    code, _, err = await run_piped(fake, "cancel-builds", "--pipeline")

    assert code == 2
    assert b"usage:" in err


# ---- the live picture -------------------------------------------------------------


def build_with_cleanup() -> build_pb2.Build:
    build = build_pb2.Build(
        build_id=BUILD_ID, pipeline="deploy", status=build_pb2.BUILD_STATUS_RUNNING
    )
    stage = build.stages.add(name="deploy")
    job = stage.jobs.add(job_id="j0", name="deploy", status=build_pb2.JOB_STATUS_RUNNING)
    job.steps.add(index=0, name="roll out", status=build_pb2.STEP_STATUS_RUNNING)
    job.steps.add(index=1, name="release lock", run_on_cancel=True)
    stage.jobs.add(
        job_id="j1", name="notify", run_on_cancel=True, status=build_pb2.JOB_STATUS_PENDING
    )
    return build


def step(
    job_id: str, index: int, status: build_pb2.StepStatus, exit_code: int | None = None
) -> build_control_pb2.WatchBuildResponse:
    changed = build_control_pb2.StepChanged(job_id=job_id, step_index=index, status=status)
    if exit_code is not None:
        changed.exit_code = exit_code
    return watch(step_changed=changed)


def job(
    job_id: str,
    status: build_pb2.JobStatus,
    outcome: build_pb2.JobOutcome = build_pb2.JOB_OUTCOME_UNSPECIFIED,
) -> build_control_pb2.WatchBuildResponse:
    return watch(
        job_changed=build_control_pb2.JobChanged(job_id=job_id, status=status, outcome=outcome)
    )


def test_the_live_model_tells_stopping_cleanup_and_the_final_state() -> None:
    progress = BuildProgress(BUILD_ID)
    progress.apply_watch(watch(snapshot=build_with_cleanup()))
    deploy, notify = progress.jobs["j0"], progress.jobs["j1"]
    assert progress.job_detail(deploy) == "step 1/2: roll out"
    assert progress.job_detail(notify) == "cleanup job, waiting"

    accepted = build_control_pb2.CancelAccepted(
        status=build_pb2.BUILD_STATUS_CANCELING, cancel=build_pb2.CancelInfo(requested_by="me")
    )
    progress.apply_cancel(build_control_pb2.CancelResponse(accepted=accepted))
    progress.apply_watch(job("j0", build_pb2.JOB_STATUS_STOPPING))
    progress.apply_watch(step("j0", 0, build_pb2.STEP_STATUS_STOPPING))
    assert progress.headline() == f"build {BUILD_ID} deploy CANCELING (cancel by me)"
    assert progress.job_detail(deploy) == "stopping: roll out (SIGTERM, then SIGKILL)"

    progress.apply_watch(step("j0", 1, build_pb2.STEP_STATUS_RUNNING))
    assert progress.job_detail(deploy) == "cleanup running: release lock"

    progress.apply_watch(step("j0", 1, build_pb2.STEP_STATUS_SUCCEEDED, 0))
    progress.apply_watch(job("j0", build_pb2.JOB_STATUS_CANCELED, build_pb2.JOB_OUTCOME_GRACEFUL))
    progress.apply_watch(job("j1", build_pb2.JOB_STATUS_RUNNING))
    assert progress.job_detail(deploy) == "outcome GRACEFUL, cleanup ran (1 step)"
    assert progress.job_detail(notify) == "cleanup job running"

    finished = build_control_pb2.CancelFinished(
        status=build_pb2.BUILD_STATUS_CANCELED,
        jobs=[
            build_control_pb2.JobCancelResult(job_id="j1", status=build_pb2.JOB_STATUS_SUCCEEDED)
        ],
    )
    progress.apply_cancel(build_control_pb2.CancelResponse(finished=finished))
    assert progress.terminal
    assert progress.jobs["j1"].status == build_pb2.JOB_STATUS_SUCCEEDED


def test_the_live_view_redraws_on_a_terminal_and_leaves_the_last_picture() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system="standard")
    with LiveView(BuildProgress(BUILD_ID), console=console) as view:
        view.watch_event(watch(snapshot=build_with_cleanup()))
        view.watch_event(job("j0", build_pb2.JOB_STATUS_STOPPING))
        view.watch_event(step("j0", 1, build_pb2.STEP_STATUS_RUNNING))

    drawn = screen.getvalue()
    assert "\x1b[" in drawn  # a terminal gets cursor moves and colours
    assert "cleanup running: release lock" in drawn


def test_names_with_markup_or_escapes_are_shown_as_text() -> None:
    build = build_with_cleanup()
    build.stages[0].jobs[0].name = "[bold red]x[/] \x1b[2J"
    progress = BuildProgress(BUILD_ID)
    progress.apply_watch(watch(snapshot=build))
    screen = io.StringIO()
    Console(file=screen, force_terminal=False, width=100).print(progress.render())

    assert "[bold red]x[/] \\x1b[2J" in screen.getvalue()
