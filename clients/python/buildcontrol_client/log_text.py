"""A job's log bytes as text for the CLI, chunk after chunk: ANSI escape sequences kept
(a terminal shows the colours) or stripped (piped output, --json), and bytes that are
not UTF-8 shown as replacement characters.

Chunks end wherever the agent's upload cut them, so a colour code or a UTF-8 character
may be split between two: the cut-off start of an escape sequence and an unfinished
UTF-8 character are held until the next chunk (or the end of the log) completes them.
Without that, `\\x1b[3` + `2mgreen` prints `2mgreen`, and a split `é` two `�`."""

from __future__ import annotations

import codecs
import re

# CSI and OSC sequences (colours, cursor moves, titles), lone escapes, and what is
# left of a sequence cut off by the next one (`\x1b[3\x1b[31m`): plain text never
# keeps an ESC byte.
ANSI = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]"
    rb"|\x1b\[[0-?]*[ -/]*|\x1b"
)
# The start of a sequence that the next bytes may complete: ESC alone, a CSI without
# its final byte, an OSC without its terminator (or with half of ESC \).
_UNFINISHED = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?)?")
# Longest unfinished sequence held back; a longer one is not a sequence worth waiting for.
MAX_HELD = 4096


def strip_ansi(data: bytes) -> bytes:
    return ANSI.sub(b"", data)


def unfinished_tail(data: bytes) -> int:
    """Where an escape sequence cut off at the end of `data` starts (len(data): none)."""
    floor = max(0, len(data) - MAX_HELD)
    last = data.rfind(b"\x1b", floor)
    if last < 0:
        return len(data)
    # An OSC cut in its terminator (ESC \) ends in an ESC of its own: the sequence
    # starts at the ESC before.
    before = data.rfind(b"\x1b", floor, last)
    for position in (before, last):
        if position >= 0 and _UNFINISHED.fullmatch(data, position):
            return position
    return len(data)


class LogText:
    """One job's log, decoded chunk by chunk (make one per job)."""

    def __init__(self, keep_ansi: bool) -> None:
        self._keep_ansi = keep_ansi
        self._held = b""  # the start of an escape sequence cut off by the last chunk
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def bytes_of(self, data: bytes) -> bytes:
        """The bytes to show of this chunk (ANSI stripped unless kept)."""
        if self._keep_ansi:
            return data
        data = self._held + data
        cut = unfinished_tail(data)
        data, self._held = data[:cut], data[cut:]
        return strip_ansi(data)

    def text_of(self, data: bytes) -> str:
        """This chunk as text (a UTF-8 character cut off is completed by the next)."""
        return self._decoder.decode(self.bytes_of(data))

    def rest_bytes(self) -> bytes:
        """What is left to show at the end of the log: nothing, since what was held
        back is the start of an escape sequence that never completed (dropped)."""
        self._held = b""
        return b""

    def rest(self) -> str:
        """What was held back, and an unfinished UTF-8 character, at the end of the log."""
        return self._decoder.decode(self.rest_bytes(), final=True)
