"""Pipeline files (YAML, or JSON which YAML reads too) turned into a SubmitBuildRequest.

    pipeline: hello
    concurrency_group: hello-main        # optional: one build of the group at a time
    cancel_in_progress: true             # optional: a new build cancels the older ones
    stages:
      - name: build
        jobs:
          - name: compile
            labels: {os: linux}
            env: {CC: gcc}
            timeout: 600                        # optional, seconds
            steps:
              - make                                # a bare command
              - {name: test, command: make test}    # or a named one
              - {command: make clean, run_on_cancel: true}   # also runs after a cancel
          - name: report
            run_on_cancel: true                 # a cleanup job: runs after a cancel too
            steps: [./report.sh]

Every error names the key path that is wrong (`stages[0].jobs[1].steps[2].command`), so a
user fixes the file without guessing. The server validates again; this is for early,
local feedback.

Scalars are kept as written: the file is composed into YAML nodes and every value is
read as its source text, typed by the key it belongs to, never by YAML 1.1's guesses
(`OCT: 0755` stays "0755", `T: 12:30` stays "12:30", `V: 1.10` stays "1.10", a label
`NO` stays "NO"). Flags are `true`/`false` only, timeouts a number of seconds or a
duration (`90`, `10m`, `1h30m`), duplicate keys are refused. The Node.js client reads
the same files the same way (clients/node/src/pipeline.js; tests/pipelines holds the
shared cases).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml
from buildcontrol_proto.v1 import build_control_pb2

from buildcontrol_client.arg_types import parse_duration


class PipelineFileError(ValueError):
    """The file is not a valid pipeline. `key_path` is where (empty for the whole file)."""

    def __init__(self, key_path: str, problem: str, source: str = "") -> None:
        where = ": ".join(part for part in (source, key_path) if part)
        super().__init__(f"{where}: {problem}" if where else problem)
        self.key_path = key_path
        self.problem = problem
        self.source = source


PIPELINE_KEYS = frozenset({"pipeline", "stages", "concurrency_group", "cancel_in_progress"})
STAGE_KEYS = frozenset({"name", "jobs"})
JOB_KEYS = frozenset({"name", "labels", "env", "secret_env", "steps", "run_on_cancel", "timeout"})
STEP_KEYS = frozenset({"name", "command", "run_on_cancel"})
# The server's own bound (7 days); checked here too, for an error that names the key.
MAX_JOB_TIMEOUT_SECONDS = 7 * 24 * 3600


def load_pipeline_file(path: str | Path) -> build_control_pb2.SubmitBuildRequest:
    """Read and check a pipeline file; raise PipelineFileError (or OSError) if it is wrong."""
    source = str(path)
    text = Path(path).read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise PipelineFileError("", _describe_yaml_error(error), source) from error
    try:
        data = _as_written(node, "")
    except PipelineFileError as error:
        raise PipelineFileError(error.key_path, error.problem, source) from None
    return parse_pipeline(data, source)


# YAML 1.2's null, for a plain (unquoted) scalar: an absent optional value.
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})


def _as_written(node: yaml.Node | None, where: str) -> object:
    """Dicts, lists and the scalars' source text (None for a plain null)."""
    if node is None:
        return None
    if isinstance(node, yaml.ScalarNode):
        if node.style is None and node.value in _NULLS:
            return None
        return str(node.value)
    if isinstance(node, yaml.SequenceNode):
        return [_as_written(item, f"{where}[{i}]") for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = _as_written(key_node, where)
            path = f"{where}.{key}" if where else str(key)
            if not isinstance(key, str):
                raise PipelineFileError(path, "keys must be strings")
            if key in result:
                line = key_node.start_mark.line + 1
                raise PipelineFileError(path, f"duplicate key (again at line {line})")
            result[key] = _as_written(value_node, path)
        return result
    raise PipelineFileError(where, f"unsupported YAML node {type(node).__name__}")


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    """One line with the position, instead of PyYAML's multi-line excerpt."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return f"not valid YAML or JSON: {problem}"
    return f"not valid YAML or JSON at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def parse_pipeline(data: object, source: str = "") -> build_control_pb2.SubmitBuildRequest:
    """Check an already-parsed pipeline document (dicts and lists) and build the request."""
    try:
        return _parse_document(data)
    except PipelineFileError as error:
        if source and not error.source:
            raise PipelineFileError(error.key_path, error.problem, source) from None
        raise


def _parse_document(data: object) -> build_control_pb2.SubmitBuildRequest:
    document = _mapping(data, "", PIPELINE_KEYS)
    request = build_control_pb2.SubmitBuildRequest(
        pipeline=_name(document.get("pipeline"), "pipeline"),
        cancel_in_progress=_flag(document.get("cancel_in_progress"), "cancel_in_progress"),
    )
    group = document.get("concurrency_group")
    if group is not None:
        request.concurrency_group = _name(group, "concurrency_group")
    if request.cancel_in_progress and not request.concurrency_group:
        raise PipelineFileError("cancel_in_progress", "needs a concurrency_group")
    for s, stage in enumerate(_list(document.get("stages"), "stages")):
        request.stages.append(_parse_stage(stage, f"stages[{s}]"))
    return request


def _parse_stage(data: object, where: str) -> build_control_pb2.StageSpec:
    stage = _mapping(data, where, STAGE_KEYS)
    spec = build_control_pb2.StageSpec(name=_name(stage.get("name"), f"{where}.name"))
    seen: set[str] = set()
    for j, job in enumerate(_list(stage.get("jobs"), f"{where}.jobs")):
        job_spec = _parse_job(job, f"{where}.jobs[{j}]")
        if job_spec.name in seen:
            raise PipelineFileError(f"{where}.jobs[{j}].name", f"{job_spec.name!r} repeats")
        seen.add(job_spec.name)
        spec.jobs.append(job_spec)
    return spec


def _parse_job(data: object, where: str) -> build_control_pb2.JobSpec:
    job = _mapping(data, where, JOB_KEYS)
    spec = build_control_pb2.JobSpec(
        name=_name(job.get("name"), f"{where}.name"),
        labels=_string_map(job.get("labels"), f"{where}.labels"),
        env=_env_map(job.get("env"), f"{where}.env"),
        secret_env=_env_map(job.get("secret_env"), f"{where}.secret_env"),
        run_on_cancel=_flag(job.get("run_on_cancel"), f"{where}.run_on_cancel"),
    )
    timeout = job.get("timeout")
    if timeout is not None:
        spec.timeout.FromNanoseconds(round(_seconds(timeout, f"{where}.timeout") * 1e9))
    for k, step in enumerate(_list(job.get("steps"), f"{where}.steps")):
        spec.steps.append(_parse_step(step, f"{where}.steps[{k}]"))
    return spec


def _parse_step(data: object, where: str) -> build_control_pb2.StepSpec:
    if isinstance(data, str):
        return build_control_pb2.StepSpec(command=_command(data, where))
    step = _mapping(data, where, STEP_KEYS, what="a command string or a mapping")
    name = step.get("name", "")
    if not isinstance(name, str):
        raise PipelineFileError(f"{where}.name", f"must be a string, not {_kind(name)}")
    return build_control_pb2.StepSpec(
        name=name,
        command=_command(step.get("command"), f"{where}.command"),
        run_on_cancel=_flag(step.get("run_on_cancel"), f"{where}.run_on_cancel"),
    )


def _mapping(
    data: object, where: str, allowed: frozenset[str], what: str = "a mapping"
) -> Mapping[str, object]:
    if not isinstance(data, Mapping):
        raise PipelineFileError(where, f"must be {what}, not {_kind(data)}")
    for key in data:
        if key not in allowed:
            shown = f"{where}.{key}" if where else str(key)
            expected = ", ".join(sorted(allowed))
            raise PipelineFileError(shown, f"unknown key (expected one of: {expected})")
    return data


def _list(data: object, where: str) -> list[object]:
    if data is None:
        raise PipelineFileError(where, "is required (a list with at least one entry)")
    if not isinstance(data, list):
        raise PipelineFileError(where, f"must be a list, not {_kind(data)}")
    if not data:
        raise PipelineFileError(where, "needs at least one entry")
    return data


def _name(data: object, where: str) -> str:
    if data is None:
        raise PipelineFileError(where, "is required")
    if not isinstance(data, str):
        raise PipelineFileError(where, f"must be a string, not {_kind(data)}")
    if not data.strip():
        raise PipelineFileError(where, "must not be empty")
    return data


def _command(data: object, where: str) -> str:
    if data is None:
        raise PipelineFileError(where, "is required")
    if not isinstance(data, str):
        raise PipelineFileError(where, f"must be a string, not {_kind(data)}")
    if not data.strip():
        raise PipelineFileError(where, "must not be empty")
    return data


def _flag(data: object, where: str) -> bool:
    """`true` or `false` (YAML 1.2's spellings); absent is false. "yes", "on" and the like
    are refused: YAML 1.1 and 1.2 disagree about them, and a cleanup silently off is
    worse than an error."""
    if data is None:
        return False
    if isinstance(data, bool):
        return data
    if isinstance(data, str) and data in _TRUE | _FALSE:
        return data in _TRUE
    raise PipelineFileError(where, f"must be true or false, not {_kind(data)}")


def _seconds(data: object, where: str) -> float:
    """A positive number of seconds or a duration (`10m`), at most the server's limit."""
    if isinstance(data, bool) or not isinstance(data, int | float | str):
        raise PipelineFileError(where, f"must be a number of seconds, not {_kind(data)}")
    if isinstance(data, str):
        try:
            data = parse_duration(data)
        except ValueError:
            raise PipelineFileError(
                where, f"must be a number of seconds or a duration like 10m, not {data!r}"
            ) from None
    if not 0 < data <= MAX_JOB_TIMEOUT_SECONDS:
        raise PipelineFileError(where, f"must be more than 0 and at most {MAX_JOB_TIMEOUT_SECONDS}")
    return float(data)


def _string_map(data: object, where: str) -> dict[str, str]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise PipelineFileError(where, f"must be a mapping, not {_kind(data)}")
    result: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key:
            raise PipelineFileError(f"{where}.{key}", "keys must be non-empty strings")
        result[key] = _scalar_text(value, f"{where}.{key}")
    return result


def _env_map(data: object, where: str) -> dict[str, str]:
    env = _string_map(data, where)
    for key, value in env.items():
        # The kernel's execve takes NAME=VALUE strings: these would make the step unstartable.
        if "=" in key or "\0" in key:
            raise PipelineFileError(f"{where}.{key}", "a variable name cannot hold '=' or NUL")
        if "\0" in value:
            raise PipelineFileError(f"{where}.{key}", "a value cannot hold NUL")
    return env


def _scalar_text(value: object, where: str) -> str:
    """YAML reads `debug: true` and `jobs: 4` as bool and int; CI users mean the text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise PipelineFileError(where, f"must be a string, number or boolean, not {_kind(value)}")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
