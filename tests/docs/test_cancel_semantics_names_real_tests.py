"""docs/cancel-semantics.md names, for each guarantee, the test that shows it: every
test it names must exist (a renamed or removed test would leave a guarantee unshown)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cancel-semantics.md"
# `tests/x/test_y.py::name`, `test_y.py::name` (found by file name), `::name` (the file
# named last), or a test file alone.
REFERENCE = re.compile(r"((?:tests/)?[\w/]*test_\w+\.py|tests/[\w/]+\.py)?(?:::(\w+))?")


def files_by_name() -> dict[str, list[Path]]:
    by_name: dict[str, list[Path]] = {}
    for path in (ROOT / "tests").rglob("*.py"):
        by_name.setdefault(path.name, []).append(path)
    return by_name


def named_tests(text: str) -> list[tuple[str, Path | None, str | None]]:
    """(the reference as written, its file, the function it names) for each one."""
    files = files_by_name()
    found: list[tuple[str, Path | None, str | None]] = []
    last: Path | None = None
    for span in re.findall(r"`([^`]+)`", text):
        match = REFERENCE.fullmatch(span)
        if match is None or not any(match.groups()):
            continue
        file, function = match.groups()
        if file is not None:
            if file.startswith("tests/"):
                last = ROOT / file
            else:
                candidates = files.get(Path(file).name, [])
                last = candidates[0] if len(candidates) == 1 else None
        found.append((span, last, function))
    return found


def test_every_test_the_cancel_semantics_doc_names_exists() -> None:
    references = named_tests(DOC.read_text())
    assert len(references) > 30, "the doc's guarantee tables name their tests"
    missing = []
    for span, path, function in references:
        if path is None or not path.exists():
            missing.append(f"{span}: no such test file (or more than one of that name)")
        elif function is not None and not re.search(
            rf"^(async )?def {function}\(", path.read_text(), re.MULTILINE
        ):
            missing.append(f"{span}: no {function} in {path.relative_to(ROOT)}")
    assert not missing, "\n".join(missing)


def test_a_name_that_no_test_has_is_found() -> None:
    text = "`tests/rpc/test_cancel_rpc.py::test_no_such_behaviour`, `::test_neither`"
    references = named_tests(text)
    assert [(span, function) for span, _, function in references] == [
        ("tests/rpc/test_cancel_rpc.py::test_no_such_behaviour", "test_no_such_behaviour"),
        ("::test_neither", "test_neither"),
    ]
    source = (ROOT / "tests/rpc/test_cancel_rpc.py").read_text()
    assert "def test_no_such_behaviour(" not in source
