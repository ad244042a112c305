"""Both clients read one shared set of pipeline files (tests/pipelines) into the same
SubmitBuildRequest, keep scalars as written (no YAML 1.1 surprises), and refuse the
same bad files (duplicate keys, `yes` flags, timeouts that are not durations)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from buildcontrol_client.pipeline_file import PipelineFileError, load_pipeline_file
from buildcontrol_proto.v1 import build_control_pb2

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "tests" / "pipelines"
NODE_SCRIPT = ROOT / "clients" / "node" / "bin" / "pipeline-request.js"
GOOD = sorted((PIPELINES / "good").glob("*.yaml"))
BAD = sorted((PIPELINES / "bad").glob("*.yaml"))


def node_request(path: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed: CI must compare both clients")
        pytest.skip("node is not installed (apt-get install nodejs) so only Python is checked")
    if not (NODE_SCRIPT.parent.parent / "node_modules").exists():
        pytest.skip("run `make node-test` once (npm ci) to compare with the Node client")
    return subprocess.run(
        [node, str(NODE_SCRIPT), str(path)], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_both_clients_give_the_same_request(path: Path) -> None:
    python = load_pipeline_file(path)
    answer = node_request(path)
    assert answer.returncode == 0, answer.stderr
    node = build_control_pb2.SubmitBuildRequest.FromString(base64.b64decode(answer.stdout))
    assert node == python


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_both_clients_refuse_the_same_files(path: Path) -> None:
    with pytest.raises(PipelineFileError):
        load_pipeline_file(path)
    answer = node_request(path)
    assert answer.returncode == 4, answer.stdout
    assert answer.stderr.startswith("error: INVALID_ARGUMENT: ")


def test_scalars_stay_as_written() -> None:
    request = load_pipeline_file(PIPELINES / "good" / "yaml11_traps.yaml")
    job = request.stages[0].jobs[0]
    assert dict(job.env) == {
        "OCT": "0755",
        "T": "12:30",
        "V": "1.10",
        "BIG": "1e3",
        "EMPTY": "",
        "QUOTED_NULL": "null",
    }
    assert dict(job.labels) == {"NO": "no", "region": "NO", "on": "yes"}


def test_timeouts_take_durations_and_flags_only_true_or_false() -> None:
    request = load_pipeline_file(PIPELINES / "good" / "durations_and_flags.yaml")
    jobs = request.stages[0].jobs
    assert [j.timeout.ToTimedelta().total_seconds() for j in jobs] == [90, 5400, 2.5]
    assert request.cancel_in_progress
    assert [s.run_on_cancel for s in jobs[1].steps] == [False, True]


def test_duplicate_key_names_the_key_and_the_line() -> None:
    with pytest.raises(PipelineFileError) as raised:
        load_pipeline_file(PIPELINES / "bad" / "duplicate_key.yaml")
    assert raised.value.key_path == "stages[0].jobs[0].env.A"
    assert "duplicate key (again at line 8)" in raised.value.problem


def test_anchors_are_followed() -> None:
    request = load_pipeline_file(PIPELINES / "good" / "anchors.yaml")
    assert [dict(j.env) for j in request.stages[0].jobs] == [{"CC": "gcc", "LEVEL": "03"}] * 2
