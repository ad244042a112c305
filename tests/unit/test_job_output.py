"""The agent's side of a job's log, without processes: secrets masked also when split
across reads, the limit cut exactly with one marker line, the stop line."""

from __future__ import annotations

from pathlib import Path

from buildcontrol_client.job_output import (
    JobOutput,
    ReadPacer,
    SecretMask,
    limit_line,
    stop_line,
)


def test_a_secret_split_across_reads_is_still_masked() -> None:
    mask = SecretMask(["s3cret", "ab"])
    pieces = [mask.feed(part) for part in (b"x s3", b"cr", b"et y a", b"b\n")]
    assert b"".join(pieces) + mask.flush() == b"x *** y ***\n"


def test_without_secrets_bytes_pass_at_once() -> None:
    mask = SecretMask([])
    assert mask.feed(b"abc") == b"abc"
    assert mask.flush() == b""


async def test_the_limit_keeps_exactly_limit_bytes_then_one_marker(tmp_path: Path) -> None:
    output = JobOutput(tmp_path, "b1-j0", limit=10)
    output.write(b"0123456")
    output.write(b"789abcdef")
    output.note_stop_line(stop_line("SIGKILL", 2.04, "alice", "wrong branch"))
    output.finish()
    expected = (
        b"0123456789"
        + limit_line(6, 10)
        + b"--- stopped: SIGKILL after 2.0 s by alice: wrong branch ---\n"
    )
    assert output.read(0, 1000) == expected
    assert (tmp_path / "b1-j0.log").read_bytes() == expected
    output.close()


def test_the_stop_line_leaves_out_what_it_does_not_know() -> None:
    assert stop_line("SIGTERM", 0.25, "", "") == b"--- stopped: SIGTERM after 0.2 s ---\n"


def test_the_read_pacer_pauses_once_its_burst_is_spent() -> None:
    pacer = ReadPacer(rate=1_000_000, burst=100_000)
    assert pacer.spend(100_000) == 0.0  # the burst itself passes at once
    pause = pacer.spend(500_000)
    # 500 kB over the burst at 1 MB/s: about half a second (less the time since).
    assert 0.45 < pause <= 0.5
