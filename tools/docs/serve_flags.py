"""The settings table of docs/operations.md, generated from the one declaration of the
server's settings (buildcontrol_server/config.py), so the docs list exactly the flags,
variables, defaults and rules the server takes.

    .venv/bin/python tools/docs/serve_flags.py            # rewrite the marked block
    .venv/bin/python tools/docs/serve_flags.py --check    # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from buildcontrol_server.config_sources import CONFIG_FLAG, CONFIG_VARIABLE, options

BEGIN = "<!-- BEGIN GENERATED serve flags: tools/docs/serve_flags.py -->"
END = "<!-- END GENERATED serve flags -->"
DEFAULT_DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def render() -> str:
    lines = [
        "<!-- Do not edit by hand: `make docs` rewrites this block from config.py. -->",
        "",
        "| flag | variable | default | value | meaning |",
        "| --- | --- | --- | --- | --- |",
        f"| `{CONFIG_FLAG} FILE` | `{CONFIG_VARIABLE}` | — | a TOML file | settings by key "
        "(the flag without `--`) |",
    ]
    for item in options():
        flag = f"{item.flag} {item.option.rule.metavar}"
        if item.option.repeat:
            flag += " ..."
        default = _default(item.option.shown_default or item.default)
        lines.append(
            f"| `{flag}` | `{item.variable}` | {default} "
            f"| {_cell(item.option.rule.words)} | {_cell(item.option.help)} |"
        )
    return "\n".join(lines)


def _default(value: object) -> str:
    if value is None or value == ():
        return "—"
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
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
