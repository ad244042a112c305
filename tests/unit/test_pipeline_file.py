"""Pipeline files: YAML or JSON in, SubmitBuildRequest out, errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from buildcontrol_client.pipeline_file import PipelineFileError, load_pipeline_file, parse_pipeline
from buildcontrol_proto.v1 import build_control_pb2

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def minimal(**job: object) -> dict[str, object]:
    return {
        "pipeline": "p",
        "stages": [{"name": "s", "jobs": [{"name": "j", "steps": ["true"], **job}]}],
    }


def test_full_pipeline_becomes_the_request(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        """
pipeline: hello
stages:
  - name: build
    jobs:
      - name: compile
        labels: {os: linux, cores: 4}
        env: {CI: true, LEVEL: 2}
        steps:
          - make
          - {name: test, command: make test}
  - name: ship
    jobs:
      - name: upload
        steps: [./upload.sh]
"""
    )

    request = load_pipeline_file(path)

    job = build_control_pb2.JobSpec(
        name="compile",
        labels={"os": "linux", "cores": "4"},
        env={"CI": "true", "LEVEL": "2"},
        steps=[
            build_control_pb2.StepSpec(command="make"),
            build_control_pb2.StepSpec(name="test", command="make test"),
        ],
    )
    assert request == build_control_pb2.SubmitBuildRequest(
        pipeline="hello",
        stages=[
            build_control_pb2.StageSpec(name="build", jobs=[job]),
            build_control_pb2.StageSpec(
                name="ship",
                jobs=[
                    build_control_pb2.JobSpec(
                        name="upload", steps=[build_control_pb2.StepSpec(command="./upload.sh")]
                    )
                ],
            ),
        ],
    )


def test_json_files_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(minimal(env={"A": "1"})))

    request = load_pipeline_file(path)

    assert request.stages[0].jobs[0].env == {"A": "1"}


@pytest.mark.parametrize("name", ["hello.yaml", "sleepy.yaml", "cleanup.yaml"])
def test_the_examples_are_valid(name: str) -> None:
    request = load_pipeline_file(EXAMPLES / name)

    assert request.pipeline
    assert all(step.command for stage in request.stages for job in stage.jobs for step in job.steps)


def test_sleepy_example_runs_a_background_sleep() -> None:
    request = load_pipeline_file(EXAMPLES / "sleepy.yaml")

    assert request.stages[0].jobs[0].steps[0].command == "sleep 600 & sleep 600"


def test_hello_example_has_two_stages() -> None:
    assert len(load_pipeline_file(EXAMPLES / "hello.yaml").stages) == 2


@pytest.mark.parametrize(
    ("document", "key_path", "problem"),
    [
        ([], "", "must be a mapping, not a list"),
        ({"stages": []}, "pipeline", "is required"),
        ({"pipeline": " ", "stages": []}, "pipeline", "must not be empty"),
        ({"pipeline": 3, "stages": []}, "pipeline", "must be a string, not int"),
        ({"pipeline": "p"}, "stages", "is required"),
        ({"pipeline": "p", "stages": []}, "stages", "needs at least one entry"),
        ({"pipeline": "p", "stages": {}}, "stages", "must be a list, not a mapping"),
        ({"pipeline": "p", "stages": [], "stage": []}, "stage", "unknown key"),
        ({"pipeline": "p", "stages": ["x"]}, "stages[0]", "must be a mapping, not 'x'"),
        ({"pipeline": "p", "stages": [{"name": "s"}]}, "stages[0].jobs", "is required"),
        (
            {"pipeline": "p", "stages": [{"name": "s", "jobs": [{"steps": ["true"]}]}]},
            "stages[0].jobs[0].name",
            "is required",
        ),
        (minimal(steps=[]), "stages[0].jobs[0].steps", "needs at least one entry"),
        (minimal(steps=[""]), "stages[0].jobs[0].steps[0]", "must not be empty"),
        (minimal(steps=[7]), "stages[0].jobs[0].steps[0]", "a command string or a mapping"),
        (minimal(steps=[{"name": "x"}]), "stages[0].jobs[0].steps[0].command", "is required"),
        (
            minimal(steps=[{"command": "x", "run": "y"}]),
            "stages[0].jobs[0].steps[0].run",
            "unknown",
        ),
        (minimal(labels=["os=linux"]), "stages[0].jobs[0].labels", "must be a mapping"),
        (minimal(labels={"os": None}), "stages[0].jobs[0].labels.os", "not null"),
        (minimal(env={"A": {"B": 1}}), "stages[0].jobs[0].env.A", "not a mapping"),
        (minimal(env={"A=B": "1"}), "stages[0].jobs[0].env.A=B", "cannot hold '='"),
        (minimal(envs={}), "stages[0].jobs[0].envs", "unknown key"),
        (minimal(run_on_cancel="yes"), "stages[0].jobs[0].run_on_cancel", "true or false"),
        (
            minimal(steps=[{"command": "x", "run_on_cancel": 1}]),
            "stages[0].jobs[0].steps[0].run_on_cancel",
            "true or false",
        ),
        (minimal(timeout="10 min"), "stages[0].jobs[0].timeout", "or a duration like 10m"),
        (minimal(timeout=0), "stages[0].jobs[0].timeout", "more than 0"),
        (minimal(timeout=True), "stages[0].jobs[0].timeout", "number of seconds, not bool"),
        (minimal(timeout=8 * 24 * 3600), "stages[0].jobs[0].timeout", "at most"),
        ({**minimal(), "concurrency_group": ""}, "concurrency_group", "must not be empty"),
        ({**minimal(), "cancel_in_progress": True}, "cancel_in_progress", "concurrency_group"),
        ({**minimal(), "cancel_in_progress": "yes"}, "cancel_in_progress", "true or false"),
    ],
)
def test_errors_name_the_key_path(document: object, key_path: str, problem: str) -> None:
    with pytest.raises(PipelineFileError) as raised:
        parse_pipeline(document)

    assert raised.value.key_path == key_path
    assert problem in raised.value.problem


def test_a_job_name_repeated_in_a_stage_is_rejected() -> None:
    document = {
        "pipeline": "p",
        "stages": [
            {"name": "s", "jobs": [{"name": "j", "steps": ["a"]}, {"name": "j", "steps": ["b"]}]}
        ],
    }

    with pytest.raises(PipelineFileError, match=r"stages\[0\]\.jobs\[1\]\.name: 'j' repeats"):
        parse_pipeline(document)


def test_file_errors_start_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("pipeline: p\nstages:\n  - name: s\n    jobs: 5\n")

    with pytest.raises(PipelineFileError) as raised:
        load_pipeline_file(path)

    assert str(raised.value) == f"{path}: stages[0].jobs: must be a list, not '5'"


def test_broken_yaml_is_a_pipeline_error_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("pipeline: [unclosed\n")

    with pytest.raises(PipelineFileError) as raised:
        load_pipeline_file(path)

    message = str(raised.value)
    assert message.startswith(f"{path}: not valid YAML or JSON at line 2, column 1: expected")
    assert "\n" not in message


def test_a_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_pipeline_file(tmp_path / "nope.yaml")


def test_cleanup_timeout_and_concurrency_keys_become_the_request() -> None:
    document = {
        "pipeline": "deploy",
        "concurrency_group": "deploy-main",
        "cancel_in_progress": True,
        "stages": [
            {
                "name": "s",
                "jobs": [
                    {
                        "name": "j",
                        "timeout": 90.5,
                        "steps": ["make", {"command": "make clean", "run_on_cancel": True}],
                    },
                    {"name": "notify", "run_on_cancel": True, "steps": ["./notify"]},
                ],
            }
        ],
    }

    request = parse_pipeline(document)

    assert (request.concurrency_group, request.cancel_in_progress) == ("deploy-main", True)
    job, notify = request.stages[0].jobs
    assert job.timeout.ToNanoseconds() == 90_500_000_000
    assert [step.run_on_cancel for step in job.steps] == [False, True]
    assert (job.run_on_cancel, notify.run_on_cancel) == (False, True)
    assert not notify.HasField("timeout")  # unset: the server's default applies


def test_the_cleanup_example_has_a_cleanup_step_and_a_cleanup_job() -> None:
    request = load_pipeline_file(EXAMPLES / "cleanup.yaml")

    (deploy,), (notify,) = (stage.jobs for stage in request.stages)
    assert [step.run_on_cancel for step in deploy.steps] == [False, False, False, True]
    assert notify.run_on_cancel
    assert request.cancel_in_progress and request.concurrency_group == "deploy-main"
