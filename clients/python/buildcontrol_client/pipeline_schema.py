"""The JSON Schema of pipeline files, for editors (YAML language servers validate a file
that names it: `# yaml-language-server: $schema=.../pipeline.schema.json`).

Built from pipeline_file's own key sets, so a key added there is in the schema (a test
fails otherwise); `make docs` writes it to docs/pipeline.schema.json."""

from __future__ import annotations

import json
from typing import Any

from buildcontrol_client import pipeline_file as spec

# What YAML 1.2 parses a value to in an editor: env and label values may be any scalar
# (the clients keep them as written).
_SCALAR: dict[str, Any] = {"type": ["string", "number", "boolean"]}
_NAME: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": r"\S"}
_FLAG: dict[str, Any] = {"type": "boolean", "default": False}
_DURATION: dict[str, Any] = {
    "description": "seconds, or a duration such as 90s, 10m, 1h30m",
    "oneOf": [
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": spec.MAX_JOB_TIMEOUT_SECONDS,
        },
        {"type": "string", "pattern": r"^((\d+(\.\d*)?|\.\d+)(ms|h|m|s))+$"},
    ],
}
_COMMAND: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": r"\S"}

_STEP_PROPERTIES = {
    "name": {"type": "string", "description": "shown in logs and the CLI"},
    "command": {**_COMMAND, "description": "a shell command"},
    "run_on_cancel": {**_FLAG, "description": "also runs after a cancel (cleanup)"},
}
_JOB_PROPERTIES = {
    "name": _NAME,
    "labels": {"type": "object", "additionalProperties": _SCALAR},
    "env": {
        "type": "object",
        "propertyNames": {"pattern": "^[^=\\u0000]+$"},
        "additionalProperties": _SCALAR,
    },
    "secret_env": {
        "type": "object",
        "description": "like env, but the values are masked as *** in the job's log",
        "propertyNames": {"pattern": "^[^=\\u0000]+$"},
        "additionalProperties": _SCALAR,
    },
    "steps": {
        "type": "array",
        "minItems": 1,
        "items": {
            "oneOf": [
                _COMMAND,
                {
                    "type": "object",
                    "properties": _STEP_PROPERTIES,
                    "required": ["command"],
                    "additionalProperties": False,
                },
            ]
        },
    },
    "run_on_cancel": {**_FLAG, "description": "a cleanup job: runs after a cancel too"},
    "timeout": _DURATION,
}
_STAGE_PROPERTIES = {
    "name": _NAME,
    "jobs": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": _JOB_PROPERTIES,
            "required": ["name", "steps"],
            "additionalProperties": False,
        },
    },
}
_PIPELINE_PROPERTIES = {
    "pipeline": {**_NAME, "description": "the pipeline's name"},
    "concurrency_group": {**_NAME, "description": "one build of the group at a time"},
    "cancel_in_progress": {**_FLAG, "description": "a new build cancels the older ones"},
    "stages": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": _STAGE_PROPERTIES,
            "required": ["name", "jobs"],
            "additionalProperties": False,
        },
    },
}

# The keys each level allows, as pipeline_file checks them.
LEVELS = {
    "pipeline": (_PIPELINE_PROPERTIES, spec.PIPELINE_KEYS),
    "stage": (_STAGE_PROPERTIES, spec.STAGE_KEYS),
    "job": (_JOB_PROPERTIES, spec.JOB_KEYS),
    "step": (_STEP_PROPERTIES, spec.STEP_KEYS),
}


def json_schema() -> dict[str, Any]:
    for level, (properties, keys) in LEVELS.items():
        if set(properties) != keys:
            raise AssertionError(f"the schema's {level} keys differ from pipeline_file's")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "buildcontrol pipeline file",
        "type": "object",
        "properties": _PIPELINE_PROPERTIES,
        "required": ["pipeline", "stages"],
        "additionalProperties": False,
    }


def render() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"
