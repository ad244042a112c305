"""What every job of one agent shares: how its processes are contained, the user its
steps run as, and where running jobs are recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from buildcontrol_client.job_processes import ProcessHost
from buildcontrol_client.job_records import RunningJobRecords
from buildcontrol_client.log_uploader import LogUplink
from buildcontrol_client.outbox import ResultLog
from buildcontrol_client.step_environment import StepUser


@dataclass(frozen=True)
class JobRuntime:
    host: ProcessHost = field(default_factory=ProcessHost)
    step_user: StepUser | None = None
    records: RunningJobRecords = field(default_factory=lambda: RunningJobRecords(None))
    # Where jobs' logs are uploaded; None keeps them in the work dir only.
    uplink: LogUplink | None = None
    # The agent's results not yet acknowledged: a stopped job's log tail waits until
    # the server stored them (None: it does not wait).
    results: ResultLog | None = None

    @classmethod
    def plain(cls, work_dir: Path | None = None) -> JobRuntime:
        """Process groups only, steps as the agent's user, records in `work_dir`."""
        return cls(records=RunningJobRecords(work_dir))
