"""No module over MAX_MODULE_LINES lines and no function over MAX_FUNCTION_LINES lines in
the server, the Python client and the CLI (generated stubs excluded): a file or a function that
grows past them is asking to be split by job. The few known exceptions are listed with
the reason they stay, and the list itself is checked, so it shrinks as they are split."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = (ROOT / "server", ROOT / "clients" / "python", ROOT / "cli")
GENERATED = ROOT / "stubs"  # protoc's stubs (not under CHECKED; kept out all the same)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# path (from the repository root) or "path::function" → why it is allowed for now.
ALLOWED: dict[str, str] = {}


def _sources() -> list[Path]:
    return sorted(
        path
        for root in CHECKED
        for path in root.rglob("*.py")
        if GENERATED not in path.parents and ".venv" not in path.parts
    )


def oversized(sources: list[Path] | None = None, base: Path = ROOT) -> dict[str, int]:
    """Every module and function over its limit: name → lines."""
    found: dict[str, int] = {}
    for path in _sources() if sources is None else sources:
        name = path.relative_to(base).as_posix()
        source = path.read_text(encoding="utf-8")
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            found[name] = lines
        for node in ast.walk(ast.parse(source, filename=name)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found[f"{name}::{node.name}"] = length
    return found


def test_no_module_or_function_is_over_its_limit_but_the_listed_ones() -> None:
    over = {name: lines for name, lines in oversized().items() if name not in ALLOWED}
    assert not over, (
        f"over {MAX_MODULE_LINES} lines per module or {MAX_FUNCTION_LINES} per function"
        f" (split them by job): {over}"
    )


def test_every_allowed_exception_is_still_over_its_limit() -> None:
    stale = set(ALLOWED) - set(oversized())
    assert not stale, f"no longer over the limit: remove from ALLOWED: {sorted(stale)}"


def test_the_checker_finds_a_long_function_and_a_long_module(tmp_path: Path) -> None:
    body = "\n".join(f"    x{n} = {n}" for n in range(MAX_FUNCTION_LINES))
    (tmp_path / "long_function.py").write_text(f"def long():\n{body}\n")
    (tmp_path / "short.py").write_text(f"def short():\n{body[: body.rindex(chr(10))]}\n")
    padding = "\n" * (MAX_MODULE_LINES + 1)
    (tmp_path / "long_module.py").write_text(f"X = 1{padding}")
    found = oversized(sorted(tmp_path.glob("*.py")), base=tmp_path)
    assert found == {
        "long_function.py::long": MAX_FUNCTION_LINES + 1,
        "long_module.py": MAX_MODULE_LINES + 1,
    }
    assert len(_sources()) > 50  # the real roots hold the code
