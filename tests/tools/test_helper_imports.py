"""Test modules share helpers only through tests/support: a test module may import its
own folder's helper modules and tests/support, never another folder's module, any
conftest (conftest files hold fixtures, which pytest hands out by name) or any test_*
module (importing one runs its tests' module code and ties two test files together)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
SUPPORT = TESTS / "support"


def _imported(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every tests.* module that `path` imports, relative
    imports resolved, `from tests.x import y` counted as module tests.x.y when y is one."""
    package = list(path.relative_to(root.parent).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                is_module = (root.parent / Path(*submodule.split("."))).with_suffix(".py").exists()
                found.append((node.lineno, submodule if is_module else module))
    return [(line, module) for line, module in found if module.split(".")[0] == root.name]


def _why_not(importer: Path, module: str, root: Path) -> str | None:
    target = root.parent / Path(*module.split("."))
    name = target.name
    if name == "conftest":
        return "imports a conftest (move the helper to tests/support)"
    if name.startswith("test_"):
        return "imports a test module (move the helper to tests/support or a helper module)"
    folder = target.parent if target.with_suffix(".py").exists() else target
    # Its own folder, a folder under it (e.g. tests/store/fixtures), or tests/support.
    for allowed in (importer.parent, root / "support"):
        if folder == allowed or allowed in folder.parents:
            return None
    return f"imports {module}, a module of another folder (move it to tests/support)"


def violations(root: Path = TESTS) -> list[str]:
    """Every import across folders, of a conftest or of a test module, as path:line why."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for line, module in _imported(path, root):
            why = _why_not(path, module, root)
            if why is not None:
                found.append(f"{path.relative_to(root.parent).as_posix()}:{line}: {why}")
    return found


def test_test_modules_share_helpers_only_through_support() -> None:
    assert violations() == []


def test_the_checker_finds_each_kind_of_forbidden_import(tmp_path: Path) -> None:
    root = tmp_path / "tests"
    for folder in ("rpc", "e2e", "support"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "rpc" / "conftest.py").write_text("")
    (root / "rpc" / "calls.py").write_text("")
    (root / "rpc" / "test_a.py").write_text("")
    (root / "e2e" / "processes.py").write_text("")
    (root / "support" / "servers.py").write_text("")
    (root / "rpc" / "test_fine.py").write_text(
        "from tests.rpc.calls import x\nfrom . import calls\n"
        "from tests.support.servers import y\nfrom ..support import servers\nimport os\n"
    )
    (root / "e2e" / "test_bad.py").write_text(
        "from tests.rpc.conftest import a\n"
        "from tests.rpc.test_a import b\n"
        "from tests.rpc import calls\n"
        "def f():\n    from .processes import c\n    from . import test_other\n"
    )
    (root / "e2e" / "test_other.py").write_text("from .conftest import d\n")
    (root / "e2e" / "conftest.py").write_text("")
    assert violations(root) == [
        "tests/e2e/test_bad.py:1: imports a conftest (move the helper to tests/support)",
        "tests/e2e/test_bad.py:2: imports a test module"
        " (move the helper to tests/support or a helper module)",
        "tests/e2e/test_bad.py:3: imports tests.rpc.calls, a module of another folder"
        " (move it to tests/support)",
        "tests/e2e/test_bad.py:6: imports a test module"
        " (move the helper to tests/support or a helper module)",
        "tests/e2e/test_other.py:1: imports a conftest (move the helper to tests/support)",
    ]
