"""docs/pipeline.schema.json is the generated one, the examples and the shared good
pipeline files are valid under it, and the YAML 1.1 traps it can see are not."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from buildcontrol_client.pipeline_schema import render

from tools.docs import pipeline_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "pipeline.schema.json").read_text())
VALID = sorted((ROOT / "examples").glob("*.yaml")) + sorted(
    (ROOT / "tests" / "pipelines" / "good").glob("*.yaml")
)
# What an editor sees that the schema can refuse (duplicate keys are the parser's job).
INVALID = ["yes_flag.yaml", "on_flag.yaml", "bad_timeout.yaml"]


class Yaml12Loader(yaml.SafeLoader):
    """What an editor's YAML 1.2 language server reads: only true/false are booleans
    (PyYAML's 1.1 would read `yes` and `on` as true too)."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def editor_view(path: Path) -> object:
    return yaml.load(path.read_text(), Loader=Yaml12Loader)


def test_the_published_schema_is_the_generated_one() -> None:
    assert (ROOT / "docs" / "pipeline.schema.json").read_text() == render()
    assert pipeline_schema.main(["--check"]) == 0


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", VALID, ids=[p.name for p in VALID])
def test_valid_pipeline_files_pass(path: Path) -> None:
    jsonschema.validate(editor_view(path), SCHEMA)


@pytest.mark.parametrize("name", INVALID)
def test_refused_pipeline_files_fail(name: str) -> None:
    document = editor_view(ROOT / "tests" / "pipelines" / "bad" / name)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)
