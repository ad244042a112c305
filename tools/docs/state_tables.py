"""The state tables of docs/cancel-semantics.md, generated from the code's own tables
(states.py), so the docs cannot drift from what `transition()` accepts.

    .venv/bin/python tools/docs/state_tables.py            # rewrite the marked block
    .venv/bin/python tools/docs/state_tables.py --check    # exit 1 if it is stale

Only the text between the two markers is rewritten; everything around it is prose.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from enum import Enum
from pathlib import Path

from buildcontrol_server.domain.states import (
    BUILD_TRANSITIONS,
    JOB_TRANSITIONS,
    STEP_TRANSITIONS,
    TERMINAL_BUILD,
    TERMINAL_JOB,
    TERMINAL_STEP,
    BuildStatus,
    JobOutcome,
    JobStatus,
    StepStatus,
)

BEGIN = "<!-- BEGIN GENERATED state tables: tools/docs/state_tables.py -->"
END = "<!-- END GENERATED state tables -->"
DEFAULT_DOC = Path(__file__).resolve().parents[2] / "docs" / "cancel-semantics.md"

# (title, statuses in declaration order, allowed moves, terminal statuses)
_ENTITIES: tuple[tuple[str, type[Enum], frozenset[tuple[Enum, Enum]], frozenset[Enum]], ...] = (
    ("Build", BuildStatus, frozenset(BUILD_TRANSITIONS), frozenset(TERMINAL_BUILD)),
    ("Job", JobStatus, frozenset(JOB_TRANSITIONS), frozenset(TERMINAL_JOB)),
    ("Step", StepStatus, frozenset(STEP_TRANSITIONS), frozenset(TERMINAL_STEP)),
)


def render() -> str:
    """The generated block's content (without the markers)."""
    parts = [
        "<!-- Do not edit by hand: `make docs` rewrites this block from "
        "server/buildcontrol_server/domain/states.py; tests/docs fails if it is stale. -->",
    ]
    for title, statuses, moves, terminal in _ENTITIES:
        parts.append(_entity_table(title, list(statuses), moves, terminal))
    outcomes = ", ".join(f"`{outcome.value}`" for outcome in JobOutcome)
    parts.append(f"Job outcomes: {outcomes}.")
    return "\n\n".join(parts)


def _entity_table(
    title: str, statuses: list[Enum], moves: frozenset[tuple[Enum, Enum]], terminal: frozenset[Enum]
) -> str:
    lines = [
        f"#### {title} status",
        "",
        "| from | allowed next statuses | terminal |",
        "| --- | --- | --- |",
    ]
    for status in statuses:
        # Every move is shown, even one out of a terminal status: the docs show the
        # table as it is, and the state-table tests are what forbid such a move.
        targets = [target for target in statuses if (status, target) in moves]
        shown = ", ".join(f"`{target.value}`" for target in targets) or "—"
        lines.append(f"| `{status.value}` | {shown} | {'yes' if status in terminal else ''} |")
    lines.append("")
    lines.append(f"{len(moves)} moves; any other is rejected (`IllegalTransition`).")
    return "\n".join(lines)


def replace_block(text: str, content: str) -> str:
    """`text` with the marked block's content replaced by `content`."""
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers are missing or out of order: {BEGIN!r} ... {END!r}")
    return f"{text[: start + len(BEGIN)]}\n{content}\n{text[end:]}"


def current_block(text: str) -> str:
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers are missing or out of order: {BEGIN!r} ... {END!r}")
    return text[start + len(BEGIN) : end].strip("\n")


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("doc", nargs="?", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    args = parser.parse_args(None if argv is None else list(argv))
    text = args.doc.read_text(encoding="utf-8")
    wanted = render()
    if args.check:
        if current_block(text) != wanted:
            print(f"{args.doc}: state tables are stale; run `make docs`", file=sys.stderr)
            return 1
        return 0
    updated = replace_block(text, wanted)
    if updated != text:
        args.doc.write_text(updated, encoding="utf-8")
        print(f"{args.doc}: state tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
