"""The packages import along the arrows: the server and the clients share only the wire
package (buildcontrol_proto), and only the `buildcontrol` command (buildcontrol_cli)
puts both together. Checked on the source, imports by string included."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = {
    "server/buildcontrol_server": ("buildcontrol_client", "buildcontrol_cli"),
    "clients/python/buildcontrol_client": ("buildcontrol_server", "buildcontrol_cli"),
    "stubs/buildcontrol_proto": ("buildcontrol_server", "buildcontrol_client", "buildcontrol_cli"),
}


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import of `path`, and every string that names a module
    (importlib.import_module("...") and friends)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call):
            for argument in node.args:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    yield node.lineno, argument.value


def breaks(room: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(room.rglob("*.py")):
        for line, module in imported(path):
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(room)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_a_room_imports_nothing_of_the_rooms_beside_it(room: str) -> None:
    assert breaks(ROOT / room, ROOMS[room]) == []


def test_the_check_sees_an_import_by_string(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text(
        'import importlib\nimportlib.import_module("buildcontrol_client.cli")\n'
    )
    found = breaks(tmp_path, ("buildcontrol_client",))
    assert found == ["plugin.py:2 imports buildcontrol_client.cli"]
