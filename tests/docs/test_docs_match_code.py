"""The docs that are generated from code are up to date, and the tables written by hand
say what the code says."""

from __future__ import annotations

import re
from pathlib import Path

from buildcontrol_client.cli_exit import EXIT_CODES
from buildcontrol_server.domain.states import (
    BUILD_TRANSITIONS,
    JOB_TRANSITIONS,
    STEP_TRANSITIONS,
    TERMINAL_BUILD,
    TERMINAL_JOB,
    TERMINAL_STEP,
    BuildStatus,
    JobStatus,
    StepStatus,
)

from tools.docs import serve_flags, state_tables

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROW = re.compile(r"^\| `(\w+)` \| (.*?) \| (yes)? \|$")


def test_the_state_tables_in_the_docs_are_the_generated_ones() -> None:
    text = (DOCS / "cancel-semantics.md").read_text()

    assert state_tables.current_block(text) == state_tables.render(), (
        "docs/cancel-semantics.md is stale: run `make docs`"
    )
    assert state_tables.main([str(DOCS / "cancel-semantics.md"), "--check"]) == 0


Table = tuple[set[str], set[tuple[str, str]], set[str]]  # rows, moves, terminal statuses


def parsed_tables(text: str) -> dict[str, Table]:
    """Read the docs' tables back: per entity, its rows, (from, to) moves and terminals."""
    tables: dict[str, Table] = {}
    entity = ""
    for line in state_tables.current_block(text).splitlines():
        if line.startswith("#### "):
            entity = line.split()[1]
            tables[entity] = (set(), set(), set())
        elif (match := ROW.match(line)) is not None:
            source, targets, terminal = match.groups()
            rows, moves, terminals = tables[entity]
            rows.add(source)
            moves.update((source, target) for target in re.findall(r"`(\w+)`", targets))
            if terminal:
                terminals.add(source)
    return tables


def test_the_docs_tables_read_back_as_exactly_the_code_tables() -> None:
    """Independent of the renderer: what a reader sees is what transition() accepts."""
    tables = parsed_tables((DOCS / "cancel-semantics.md").read_text())

    expected = {
        "Build": (BUILD_TRANSITIONS, TERMINAL_BUILD, BuildStatus),
        "Job": (JOB_TRANSITIONS, TERMINAL_JOB, JobStatus),
        "Step": (STEP_TRANSITIONS, TERMINAL_STEP, StepStatus),
    }
    assert set(tables) == set(expected)
    for entity, (moves, terminal, statuses) in expected.items():
        rows, shown_moves, shown_terminal = tables[entity]
        assert rows == {status.value for status in statuses}, entity
        assert shown_moves == {(a.value, b.value) for a, b in moves}, entity
        assert shown_terminal == {status.value for status in terminal}, entity


def test_a_stale_block_is_detected_and_rewritten(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{state_tables.BEGIN}\n| `OLD` | x |  |\n{state_tables.END}\noutro\n")

    assert state_tables.main([str(doc), "--check"]) == 1
    assert state_tables.main([str(doc)]) == 0
    assert state_tables.main([str(doc), "--check"]) == 0
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert "OLD" not in text


def test_the_serve_flags_in_the_operations_doc_are_the_generated_ones() -> None:
    assert serve_flags.main([str(DOCS / "operations.md"), "--check"]) == 0, (
        "docs/operations.md lists other flags than `buildcontrol serve`: run `make docs`"
    )


def test_the_cli_doc_lists_every_exit_code() -> None:
    text = (DOCS / "cli.md").read_text()

    for code, meaning in EXIT_CODES:
        assert f"| {code} | {meaning} |" in text


def test_the_docs_link_to_files_that_exist() -> None:
    for doc in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([\w./-]+\.md)(?:#[\w-]+)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
