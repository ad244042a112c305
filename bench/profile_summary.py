"""Summarise a py-spy profile written by `bench/run.py --profile-dir DIR` (collapsed
stacks: one line per stack, frames joined by `;`, then its sample count).

  .venv/bin/python bench/profile_summary.py DIR/burst.txt [--top 40] [--only buildcontrol]

Prints the share of samples per outermost frame (the main thread, a worker thread),
then the functions with the most samples inclusive (the function or anything it
called was running) and self (it was the innermost Python frame). py-spy samples
Python frames only: time in C (grpc's core, SQLite, the garbage collector) counts as
self time of the Python frame that called into it — a dataclass __init__ with a large
self share usually means collections triggered by its allocations."""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_LINE_NUMBER = re.compile(r":\d+\)")


def summarise(path: Path, top: int, only: str | None) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if only and not any(only in frame for frame in frames):
            continue
        samples = int(count)
        total += samples
        threads[frames[0]] += samples
        functions = [_LINE_NUMBER.sub(")", frame) for frame in frames[1:]]
        for function in set(functions):
            inclusive[function] += samples
        if functions:
            own[functions[-1]] += samples
    if not total:
        return "no samples"
    out = [f"{total} samples"]
    out += [f"  root {n / total:6.1%}  {name}" for name, n in threads.most_common(5)]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        out.append(f"--- {title}")
        out += [f"{n / total:6.1%}  {name}" for name, n in counter.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--only", help="keep stacks with a frame containing this text")
    args = parser.parse_args()
    print(summarise(args.profile, args.top, args.only))


if __name__ == "__main__":
    main()
