"""The flags table of docs/operations.md, generated from `buildcontrol serve`'s own
argument parser, so the docs list exactly the flags (and defaults) the server takes.

    .venv/bin/python tools/docs/serve_flags.py            # rewrite the marked block
    .venv/bin/python tools/docs/serve_flags.py --check    # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from buildcontrol_server.cli import build_parser
from buildcontrol_server.cli_environment import variable_of

BEGIN = "<!-- BEGIN GENERATED serve flags: tools/docs/serve_flags.py -->"
END = "<!-- END GENERATED serve flags -->"
DEFAULT_DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def serve_parser() -> argparse.ArgumentParser:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            parser: argparse.ArgumentParser = action.choices["serve"]
            return parser
    raise LookupError("the CLI has no `serve` command")


def render() -> str:
    lines = [
        "<!-- Do not edit by hand: `make docs` rewrites this block from the serve parser. -->",
        "",
        "| flag | variable | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for action in serve_parser()._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        flag = max(action.option_strings, key=len)
        if action.choices:
            flag += " {" + ",".join(str(choice) for choice in action.choices) + "}"
        elif action.nargs != 0:
            flag += f" {action.metavar or action.dest.upper()}"
        variable = variable_of(action) or ""
        lines.append(
            f"| `{flag}` | `{variable}` | {_default(action.default)} | {_cell(action.help or '')} |"
        )
    return "\n".join(lines)


def _default(value: object) -> str:
    if value is None or value == [] or value is argparse.SUPPRESS or value is False:
        return "—"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _block(text: str) -> tuple[int, int]:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers are missing or out of order: {BEGIN!r} ... {END!r}")
    return start + len(BEGIN), end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("doc", nargs="?", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    args = parser.parse_args(argv)
    text = args.doc.read_text(encoding="utf-8")
    start, end = _block(text)
    wanted = render()
    if args.check:
        if text[start:end].strip("\n") != wanted:
            print(f"{args.doc}: serve flags are stale; run `make docs`", file=sys.stderr)
            return 1
        return 0
    updated = f"{text[:start]}\n{wanted}\n{text[end:]}"
    if updated != text:
        args.doc.write_text(updated, encoding="utf-8")
        print(f"{args.doc}: serve flags rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
