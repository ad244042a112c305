"""Where a job's steps run and where their output goes on the agent.

With a work dir, job J runs in WORK_DIR/J/ (its steps' output, bounded, goes to
WORK_DIR/J.log: job_output.py); without one, steps run in the agent's directory.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

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


def safe_file_name(text: str) -> str:
    """Job ids come from the server; never let one climb out of the work dir."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".") or "job"
