"""A job's log as the CLI shows it, chunk by chunk (log_text.py, cli_logs.LogPrinter):
colour codes kept for a terminal or stripped, also when a chunk boundary cuts one in
two, and a UTF-8 character cut in two shown whole."""

from __future__ import annotations

import json

import pytest
from buildcontrol_client.cli_logs import RESET, LogPrinter
from buildcontrol_client.log_text import LogText, strip_ansi, unfinished_tail

GREEN = b"a1\n\x1b[32mgreen\x1b[0m\n\x1b]0;title\x07caf\xc3\xa9 \xffend\n"
SHOWN = "a1\ngreen\ncafé \ufffdend\n"


def every_split(data: bytes) -> list[list[bytes]]:
    """`data` cut into two chunks at every position (and three, around each escape)."""
    splits = [[data[:n], data[n:]] for n in range(len(data) + 1)]
    splits += [[data[:n], data[n : n + 2], data[n + 2 :]] for n in range(len(data) - 1)]
    return splits


@pytest.mark.parametrize("chunks", every_split(GREEN))
def test_stripped_text_is_the_same_wherever_the_chunks_end(chunks: list[bytes]) -> None:
    text = LogText(keep_ansi=False)
    assert "".join(text.text_of(chunk) for chunk in chunks) + text.rest() == SHOWN


@pytest.mark.parametrize("chunks", every_split(GREEN))
def test_kept_colours_are_the_bytes_as_printed_wherever_the_chunks_end(
    chunks: list[bytes],
) -> None:
    text = LogText(keep_ansi=True)
    shown = "".join(text.text_of(chunk) for chunk in chunks) + text.rest()
    assert shown == GREEN.decode(errors="replace")


def test_an_escape_that_never_completes_is_dropped_at_the_end_not_held_for_ever() -> None:
    text = LogText(keep_ansi=False)
    assert text.text_of(b"done\x1b[3") == "done"
    assert text.rest() == ""
    assert unfinished_tail(b"plain text") == len(b"plain text")
    assert unfinished_tail(b"x\x1b]0;half a title\x1b") == 1  # an OSC cut in its ESC \
    assert strip_ansi(b"\x1b[1;31mred\x1b[m") == b"red"


def test_json_lines_carry_the_stripped_text_and_the_chunk_offsets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    printer = LogPrinter({"j0": "build"}, as_json=True, keep_ansi=True)  # --json wins
    printer.write("j0", 0, b"ok \x1b[3")
    printer.write("j0", 7, b"2mgreen\x1b[0m\n")
    printer.end("j0")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"jobId": "j0", "offset": "0", "text": "ok "},
        {"jobId": "j0", "offset": "7", "text": "green\n"},
    ]


def test_prefixed_lines_on_a_terminal_keep_colours_and_reset_them_at_the_line_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    printer = LogPrinter({"j0": "compile", "j1": "test"}, as_json=False, keep_ansi=True)
    printer.write("j0", 0, b"\x1b[32mgreen\nplain\nlast \x1b[3")
    printer.write("j1", 0, b"t1\n")
    printer.write("j0", 24, b"1mred")
    printer.end("j0")
    printer.end("j1")
    assert capsys.readouterr().out.splitlines() == [
        f"compile | \x1b[32mgreen{RESET}",
        "compile | plain",
        "test    | t1",
        f"compile | last \x1b[31mred{RESET}",
    ]


def test_prefixed_lines_when_piped_have_no_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    printer = LogPrinter({"j0": "compile", "j1": "test"}, as_json=False, keep_ansi=False)
    printer.write("j0", 0, b"\x1b[32mgre")
    printer.write("j0", 8, b"en\x1b[0")
    printer.write("j0", 13, b"m\n")
    printer.end("j0")
    assert capsys.readouterr().out == "compile | green\n"


@pytest.mark.parametrize(
    ("broken", "shown"),
    [
        (b"a\x1b[3\x1b[31mred\x1b[0m b", b"ared b"),  # a CSI cut off by the next one
        (b"\x1b]0;title\x1b[1mbold", b"0;titlebold"),  # an OSC cut off: its start goes
        (b"x\x1b\x1b\x1by", b"xy"),
    ],
)
def test_stripped_text_keeps_no_escape_byte_of_a_broken_sequence(
    broken: bytes, shown: bytes
) -> None:
    assert strip_ansi(broken) == shown
    text = LogText(keep_ansi=False)
    assert "\x1b" not in text.text_of(broken) + text.rest()
