"""Where a job's steps run and where their output goes on the agent.

With a work dir, job J runs in WORK_DIR/J/ and its steps' output is appended to
WORK_DIR/J.log (a header line per step); without one, steps run in the agent's directory
and their output is discarded.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import IO

log = logging.getLogger("buildcontrol.agent")


class JobWorkspace:
    def __init__(
        self, work_dir: Path | None, job_id: str, owner: tuple[int, int] | None = None
    ) -> None:
        self._work_dir = work_dir
        self._job_id = job_id
        # (uid, gid) of the user steps run as: their directory is theirs to write.
        self._owner = owner

    def directory(self) -> Path | None:
        """The job's directory (made on first use), or None for the agent's own."""
        if self._work_dir is None:
            return None
        job_dir = self._work_dir / safe_file_name(self._job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        if self._owner is not None:
            os.chown(job_dir, *self._owner)
        return job_dir

    def open_log(self, step_index: int, title: str) -> IO[bytes] | None:
        """The job's log (one file per job, steps appended), or None to discard output."""
        if self._work_dir is None:
            return None
        path = self._work_dir / f"{safe_file_name(self._job_id)}.log"
        try:
            self._work_dir.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as header:
                header.write(f"--- step {step_index}: {title}\n".encode())
            return path.open("ab")
        except OSError as error:
            # A full or read-only disk should not fail the build: run it without a log.
            log.warning("job %s: cannot write %s (%s); output discarded", self._job_id, path, error)
            return None


def safe_file_name(text: str) -> str:
    """Job ids come from the server; never let one climb out of the work dir."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".") or "job"
